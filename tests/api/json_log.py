"""The service log as an operator reads it: the real JSON handler's lines, parsed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from api.logs import JsonFormatter


class JsonLog:
    """What a JSON-formatted handler on the root logger wrote."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Each line parsed (fails on a line that is not one JSON object)."""
        parsed = [json.loads(line) for line in self.text.splitlines()]
        assert all(isinstance(entry, dict) for entry in parsed)
        return parsed

    def where(self, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in self.lines() if all(e.get(k) == v for k, v in fields.items())]


@contextmanager
def json_log(level: int = logging.INFO) -> Iterator[JsonLog]:
    """A :class:`JsonFormatter` handler on the root logger (at ``level``) for the block."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield JsonLog(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
