"""An ASGI guard that refuses request bodies over the upload limit before they are parsed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import UploadTooLarge
from api.http.problems import error_response


class BodySizeLimit:
    """413 problem+json for a body larger than ``max_bytes``, by Content-Length or as it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, f"the body declares {declared} bytes")
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app, so its problem handler answers 413.
                    raise UploadTooLarge(
                        f"the body passed {self.max_bytes} bytes; the limit is {self.max_bytes}"
                    )
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLarge:
            if not started:
                await self._refuse(scope, receive, send, f"the body passed {self.max_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        error = UploadTooLarge(f"{why}; the limit is {self.max_bytes} bytes")
        response = error_response(error, scope.get("path") or None)
        # The rest of the body is never read: the client must not send it on this connection.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
