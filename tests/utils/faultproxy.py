"""A small fault-injecting TCP proxy for the tests and bench/faults.py: it sits between a client and the API and, per
connection, cuts it in the middle of the request body or of the response, stalls it, throttles it to a 2G link, or
drops every connection after it carried a few KB towards the server (a link that never holds long).

    with FaultProxy(upstream_port, cut=0.3) as proxy:   # clients connect to proxy.port
        ...
    # leaving the block drops every connection and the port: the upstream is unreachable until a new proxy opens
    proxy.stats  # connections, cut_request, cut_response, stalled
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from tests.utils.processes import free_port

CHUNK = 4096
DROP_NOTICED_S = 0.5  # after a drop, how long the link is silent before both ends see it reset


@dataclass
class FaultProxy:
    upstream_port: int
    cut: float = 0.0  # share of connections cut: half in the request, half in the response
    stall: float = 0.0  # share of connections that go silent for `stall_s` before carrying on
    stall_s: float = 5.0
    rate_bytes_s: float | None = None  # throttle both directions, e.g. 50 kbit/s = 6250 bytes/s
    drop_after_bytes: int | None = None  # every connection dropped once it carried this many bytes to the server
    seed: int = 7
    port: int = field(default_factory=free_port)
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.open: set[asyncio.StreamWriter] = set()
        self.rng = random.Random(self.seed)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", self.port), self.loop
        ).result(timeout=5)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        async def close() -> None:
            assert self.server is not None
            self.server.close()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for writer in self.open:  # connections still open: drop them, as a link going down would
                writer.transport.abort()
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        draw = self.rng.random()
        fate = "cut_request" if draw < self.cut / 2 else "cut_response" if draw < self.cut else "pass"
        if self.drop_after_bytes is not None:
            fate = "dropped"
        cut_at = self.rng.random()  # where in the first message of the cut direction: a share of its length
        stall = self.rng.random() < self.stall
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, server_writer)
        self.open.update(writers)
        upstream = self.pipe(client_reader, server_writer, cut_at if fate == "cut_request" else None, stall, fate,
                             writers, self.drop_after_bytes)  # fmt: skip
        downstream = self.pipe(server_reader, client_writer, cut_at if fate == "cut_response" else None, False, fate,
                               writers)  # fmt: skip
        await asyncio.gather(upstream, downstream, return_exceptions=True)
        for writer in writers:
            writer.close()
            self.open.discard(writer)

    async def pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut_at: float | None, stall: bool,
        fate: str, both: tuple[asyncio.StreamWriter, asyncio.StreamWriter], cut_after: int | None = None,
    ) -> None:  # fmt: skip
        carried = 0
        try:
            while data := await reader.read(CHUNK):
                if cut_at is not None and cut_after is None:
                    cut_after = max(1, int(cut_at * message_length(data)))
                if cut_after is not None and carried + len(data) > cut_after:
                    writer.write(data[: max(0, cut_after - carried)])
                    self.stats[fate] += 1
                    if fate == "dropped":  # the link goes silent: what got through is read before the server
                        await writer.drain()  # notices (uvicorn drops a body that comes with the disconnect)
                        await asyncio.sleep(DROP_NOTICED_S)
                    for each in both:  # the link drops: both sides see the connection reset
                        each.transport.abort()
                    return
                if stall and carried == 0:
                    self.stats["stalled"] += 1
                    await asyncio.sleep(self.stall_s)
                if self.rate_bytes_s:
                    await asyncio.sleep(len(data) / self.rate_bytes_s)
                writer.write(data)
                await writer.drain()
                carried += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()


CONTENT_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)


def message_length(first_chunk: bytes) -> int:
    """The length of the HTTP message that starts this chunk (headers and body), so a cut falls inside it."""
    head, separator, _ = first_chunk.partition(b"\r\n\r\n")
    if not separator:
        return len(first_chunk)
    length = CONTENT_LENGTH.search(head)
    return len(head) + 4 + (int(length.group(1)) if length else 0)
