"""A pure ASGI middleware that refuses request bodies larger than the configured limit with 413."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """An upload's streamed body passed its limit (the route answers 4xx)."""


class BodySizeLimit:
    """Refuse request bodies that are too large, with 413.

    JSON and SDP bodies may have ``max_bytes``; uploads under ``upload_prefixes`` ``upload_max_bytes``. Checked
    at once when ``Content-Length`` says so, else while reading.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_prefixes: tuple[str, ...] = (),
        upload_max_bytes: int = 0,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_prefixes = upload_prefixes
        self.upload_max_bytes = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting body bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = bool(self.upload_prefixes) and scope["path"].startswith(self.upload_prefixes)
        limit = self.upload_max_bytes if upload else self.max_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reject(send, 400, "invalid Content-Length")
                    return
                if declared > limit:
                    await _reject(send, 413, f"request body larger than {limit} bytes")
                    return
        if upload:
            # Uploads are large: stream them (counting) instead of buffering them here.
            seen_upload = 0

            async def counting() -> Message:
                nonlocal seen_upload
                message = await receive()
                seen_upload += len(message.get("body", b""))
                if seen_upload > limit:
                    raise BodyTooLarge(f"upload larger than {limit} bytes")
                return message

            await self.app(scope, counting, send)
            return
        # Read the whole body first (it is small: JSON and SDP), so an oversized one is refused before the
        # framework sees it -- FastAPI turns errors raised while it reads a body into a 400.
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await _reject(send, 413, f"request body larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, status: int, message: str) -> None:
    detail = {"code": status, "message": message}
    body = json.dumps({"success": False, "error": detail, "errors": [detail]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
