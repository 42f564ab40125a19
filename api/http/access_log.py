"""uvicorn's access log without query strings: a signed link's query is a credential.

uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the path *and* its query; for a followed
result link that is ``?client=…&expires=…&signature=…``, which would open the mask to anyone
who reads the log until it expires. The audit log records the route, never the query.
"""

from __future__ import annotations

import logging
from typing import Any

from api.logs import LogFormat

ACCESS_LOGGER = "uvicorn.access"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", ACCESS_LOGGER)


class WithoutQuery(logging.Filter):
    """Cuts the query off the path argument of uvicorn's access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], args[2].split("?", 1)[0], args[3], args[4])
        return True


def hide_query_strings() -> None:
    """Install :class:`WithoutQuery` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, WithoutQuery) for f in logger.filters):
        logger.addFilter(WithoutQuery())


def uvicorn_logging(log_format: LogFormat) -> dict[str, Any]:
    """``uvicorn.Config`` options for the service log's format.

    Text: uvicorn's own handlers and access line, as always. JSON: uvicorn installs no
    handler, so its lines reach the root logger's JSON handler, and its access line gives way
    to the gateway's own (api/http/request_log.py: request id, client, duration).
    """
    if log_format == "text":
        return {}
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return {"log_config": None, "access_log": False}
