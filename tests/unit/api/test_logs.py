"""The JSON log format: one object per line, its fields, the context it takes them from."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from typing import Any

import pytest

from api import logs
from api.logs import JsonFormatter, use_log_format, working_on

RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def written() -> Any:
    """A logger whose lines go through the JSON formatter into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger("bonemets.test", logging.DEBUG)
    logger.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    logger.lines = lines  # type: ignore[attr-defined]
    return logger


def test_a_line_is_one_object_with_time_level_logger_and_the_formatted_message(
    written: Any,
) -> None:
    written.warning("job %s: %d slices\nsecond line", "ab12", 3)
    (line,) = written.lines()
    assert set(line) == {"time", "level", "logger", "message"}
    assert RFC3339_UTC_MS.match(line["time"]), line["time"]
    assert (line["level"], line["logger"]) == ("WARNING", "bonemets.test")
    assert line["message"] == "job ab12: 3 slices\nsecond line"


def test_the_context_names_the_request_job_and_client(written: Any) -> None:
    token = logs.request_id.set("req-1")
    try:
        with working_on("job-1", "hospital-a"):
            written.info("inside")
        written.info("after")
    finally:
        logs.request_id.reset(token)
    written.info("outside")
    inside, after, outside = written.lines()
    assert (inside["request_id"], inside["job_id"], inside["client"]) == (
        "req-1", "job-1", "hospital-a")
    assert after["request_id"] == "req-1" and "job_id" not in after and "client" not in after
    assert "request_id" not in outside


def test_threads_started_with_to_thread_carry_the_context(written: Any) -> None:
    async def handle() -> None:
        logs.request_id.set("req-2")
        await asyncio.to_thread(written.info, "from a thread")

    asyncio.run(handle())
    (line,) = written.lines()
    assert line["request_id"] == "req-2"


def test_only_the_named_extra_fields_are_kept(written: Any) -> None:
    written.info("stage", extra={"stage": "decode", "duration_ms": 12.5,
                                 "patient_name": "Doe^Jane"})
    (line,) = written.lines()
    assert (line["stage"], line["duration_ms"]) == ("decode", 12.5)
    assert "patient_name" not in line and "Doe" not in json.dumps(line)


def test_an_exception_is_its_traceback_in_the_exception_field(written: Any) -> None:
    try:
        raise RuntimeError("the decoder broke")
    except RuntimeError:
        written.exception("job failed unexpectedly")
    (line,) = written.lines()
    assert line["message"] == "job failed unexpectedly"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the decoder broke" in line["exception"]
    assert "test_an_exception_is_its_traceback" in line["exception"]


def test_use_log_format_sets_the_root_handlers_formatter() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        use_log_format("json")
        assert isinstance(handler.formatter, JsonFormatter)
        use_log_format("text")
        assert handler.formatter is not None
        assert handler.formatter._fmt == logs.TEXT_FORMAT
    finally:
        root.handlers[:] = saved
