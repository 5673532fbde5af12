"""A load generator that costs next to nothing: requests are bytes made ahead, sent over keep-alive HTTP/1.1
connections by one asyncio loop, answers read by their Content-Length. The benchmarks run on the same two cores as
the stack they measure, so a client that spent a millisecond a request (httpx does) would take that from the stack.

Every upload carries a new Idempotency-Key and new bytes (a JPEG comment segment with the key in it), so no upload
is a replay and no blob is already stored: each one costs the API its whole durable path.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def unique_jpeg(jpeg: bytes, tag: bytes) -> bytes:
    """The same picture with a comment segment (FF FE) after the start marker: new bytes, new sha256."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + jpeg[2:]


def upload_request(host: str, token: str, jpeg: bytes, key: str) -> bytes:
    body = unique_jpeg(jpeg, key.encode())
    head = (
        f"POST /v1/photos HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: image/jpeg\r\nIdempotency-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Results:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    accepted_at: dict[str, float] = field(default_factory=dict)  # job id -> monotonic time of its 202
    bodies: list[bytes] = field(default_factory=list)  # of 202 answers, to read the job ids from

    def record(self, status: int, started: float, body: bytes) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.latencies_ms.append((time.monotonic() - started) * 1000)
        if status == 202:
            self.bodies.append(body)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


class Uploads:
    """Uploads real photos with a device token each (tokens taken in turn, as many phones would)."""

    def __init__(self, api_url: str, tokens: Sequence[str], jpegs: Sequence[bytes]) -> None:
        parts = urlsplit(api_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.tokens, self.jpegs = tokens, jpegs
        self._n = itertools.count()

    def next_request(self) -> bytes:
        n = next(self._n)
        key = uuid.uuid4().hex
        return upload_request(self.host, self.tokens[n % len(self.tokens)], self.jpegs[n % len(self.jpegs)], key)

    async def _connection(
        self,
        results: Results,
        go_on: Callable[[], bool],
        pace: Callable[[], float] | None = None,
        room: Callable[[], bool] | None = None,
    ) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            while go_on():
                if pace is not None:
                    delay = pace()
                    if delay > 0:
                        await asyncio.sleep(delay)
                while room is not None and not room() and go_on():
                    await asyncio.sleep(0.02)
                if not go_on():
                    break
                request = self.next_request()
                started = time.monotonic()
                results.sent += 1
                status, body = await _exchange(reader, writer, request)
                results.record(status, started, body)
        finally:
            writer.close()

    def send(self, count: int) -> Results:
        """`count` uploads, one after the other."""
        results = Results()
        asyncio.run(self._connection(results, lambda: results.sent < count))
        return results

    def closed_loop(self, connections: int, seconds: float, results: Results | None = None) -> Results:
        """`connections` uploads in flight at all times for `seconds`."""
        results = results or Results()
        deadline = time.monotonic() + seconds

        async def run() -> None:
            await asyncio.gather(*(self._connection(results, lambda: time.monotonic() < deadline)
                                   for _ in range(connections)))  # fmt: skip

        asyncio.run(run())
        return results

    def keep_waiting(
        self, room: Callable[[], bool], stop: Callable[[], bool], results: Results, connections: int = 4
    ) -> Results:
        """Upload whenever `room()` says the queue has room (a backlog kept at a size), until `stop()`."""

        async def run() -> None:
            await asyncio.gather(*(self._connection(results, lambda: not stop(), room=room)
                                   for _ in range(connections)))  # fmt: skip

        asyncio.run(run())
        return results

    def open_loop(self, rate: float, seconds: float, connections: int = 16) -> Results:
        """Uploads started on a fixed schedule of `rate` per second, whatever the answers' speed (up to
        `connections` in flight)."""
        results = Results()
        start = time.monotonic()
        slots = itertools.count()

        def pace() -> float:
            return start + next(slots) / rate - time.monotonic()

        async def run() -> None:
            await asyncio.gather(*(self._connection(results, lambda: time.monotonic() - start < seconds, pace)
                                   for _ in range(connections)))  # fmt: skip

        asyncio.run(run())
        return results
