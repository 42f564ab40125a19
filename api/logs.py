"""The service log's two formats, and who a line was written for.

``text`` is the classic ``time level logger: message`` line. ``json`` writes one JSON object
per line: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``, and,
when known, ``request_id``, ``job_id`` and ``client``, taken from context variables that the
HTTP layer sets for a request and the job runner for a job (asyncio copies them into the
tasks and ``to_thread`` calls started under them, so their lines carry them too). A few
named fields passed with ``extra=`` (:data:`EXTRA_FIELDS`) are kept; nothing else a record
carries is, so no value reaches the log by accident. A traceback is the ``exception`` field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[str | None] = ContextVar("bonemets_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("bonemets_job_id", default=None)
client: ContextVar[str | None] = ContextVar("bonemets_client", default=None)
CONTEXT = {"request_id": request_id, "job_id": job_id, "client": client}
# What a line may carry besides its message (``extra=``): values the service made, never
# one read from a file or a request body.
EXTRA_FIELDS = ("stage", "duration_ms", "method", "path", "status")


@contextmanager
def working_on(job: str, owner: str | None) -> Iterator[None]:
    """Lines written inside (and in the tasks and threads started inside) name the job and
    the client that sent it."""
    tokens = (job_id.set(job), client.set(owner))
    try:
        yield
    finally:
        job_id.reset(tokens[0])
        client.reset(tokens[1])


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, variable in CONTEXT.items():
            value = getattr(record, name, None) or variable.get()
            if value is not None:
                entry[name] = value
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_log_format(log_format: LogFormat) -> None:
    """Write the root logger's lines in ``log_format`` (a handler on stderr if it has none).

    uvicorn's loggers keep their own handlers unless told otherwise (``bonemets serve``
    hands them to the root logger in JSON mode).
    """
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO)
    for handler in root.handlers:
        handler.setFormatter(formatter(log_format))


def _rfc3339(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
