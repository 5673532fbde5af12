"""ASGI middleware that refuses request bodies over the size limit while they stream in, with a 413 that says what to
send instead; and the one way a header that carries a byte count is read."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producers.api import problems

COUNT = re.compile(r"[0-9]{1,19}")  # ASCII digits only ('²'.isdigit() is true, int('²') fails), and below 2**63


def header_count(value: str | bytes | None) -> int | None:
    """A byte count or offset as a header carries it (Content-Length, Upload-Length, Upload-Offset); None for
    anything else: a sign, a space, a digit of another script, or a number too long to be a size."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return int(text) if text is not None and COUNT.fullmatch(text) else None


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Bodies of at most `max_bytes`, for every path or for one (`path`), refused with `detail` beyond it."""

    def __init__(self, app: ASGIApp, max_bytes: int, detail: str | None = None, path: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = detail or f"The photo is larger than {max_bytes // (1024 * 1024)} MB. Send a smaller photo."
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.path is not None and scope["path"] != self.path):
            await self.app(scope, receive, send)
            return
        declared = header_count(dict(scope["headers"]).get(b"content-length"))
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = problems.encoded(413, self.detail)
        headers = [(b"content-type", problems.PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": [*headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
