"""uvicorn's access log without query strings: a signed link's query is a credential.

uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` with the path *and* its query; for a followed
result link that is ``?client=…&expires=…&signature=…``, which would open the mask to anyone
who reads the log until it expires. The audit log records the route, never the query.
"""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


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
