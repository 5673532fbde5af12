"""Logging for every mhogo service: one root handler on stderr, one JSON object per line (or plain text), and the job
id of the photo being handled on every line, so one `job_id` follows a photo from upload to result across processes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from core.redact import redact, secrets_of

# Set where a photo's work starts (an API request, a Celery task) and read by every log line written meanwhile.
job_id_var: ContextVar[str | None] = ContextVar("job_id", default=None)
task_var: ContextVar[str | None] = ContextVar("task", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
TaskTokens = tuple[Token[str | None], Token[str | None], Token[str | None]]

# uvicorn puts an ANSI-coloured copy of its message on some records: noise in a log file.
NOT_LOGGED = [*RESERVED_ATTRS, "color_message"]
# Celery's copy of its message's arguments, under `data`: fine in JSON, too long for a line of text.
NOT_IN_TEXT = {*NOT_LOGGED, "data"}

_service: str | None = None


class ContextFilter(logging.Filter):
    """Puts the job id, task and service on each record, unless the call named its own with `extra`. On the handler,
    not on a logger, so that records from every logger (Celery's, uvicorn's) pass through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = {"job_id": job_id_var.get(), "task": task_var.get(), "task_id": task_id_var.get(), "service": _service}
        for name, value in known.items():
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class UtcJsonFormatter(JsonFormatter):
    """python-json-logger's formatter with the time in ISO 8601 UTC, whatever the machine's time zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Redacting(logging.Formatter):
    """Formats with `inner`, then masks secrets in the finished line (tracebacks and `extra` fields included)."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner, self.secrets = inner, frozenset(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.secrets)


class PlainFormatter(logging.Formatter):
    """For a person at a terminal: one line of text, with the context and `extra` fields at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name); before any traceback
        line = super().formatMessage(record)
        fields = [f"{k}={v}" for k, v in record.__dict__.items() if k not in NOT_IN_TEXT and not k.startswith("_")]
        return f"{line} [{' '.join(fields)}]" if fields else line


def configure_logging(
    level: str,
    json_logs: bool = True,
    stream: IO[str] | None = None,
    service: str | None = None,
    secrets: Iterable[str] | None = None,
) -> logging.Handler:
    """Install the one root handler (replacing the one an earlier call installed) and return it. `service` names
    this process on every line; left out, the name given by an earlier call stays. Every line is redacted (see
    core/redact.py) of `secrets`, by default the ones in mhogo's settings."""
    global _service
    if service is not None:
        _service = service
    formatter: logging.Formatter
    if json_logs:
        formatter = UtcJsonFormatter(
            ["asctime", "levelname", "name", "message"],
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=NOT_LOGGED,
        )
    else:
        formatter = PlainFormatter()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if secrets is None:
        from core.config import settings

        secrets = secrets_of(settings)
    handler.setFormatter(Redacting(formatter, secrets))
    handler.addFilter(ContextFilter())
    handler.set_name("mhogo")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "mhogo"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # Python warnings become log lines too, in the same format
    return handler


@contextmanager
def bind_job(job_id: str | None) -> Iterator[None]:
    """Every line logged inside the block, in this thread or task, carries `job_id`."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)


def bind_task(job_id: str | None, task: str, task_id: str | None) -> TaskTokens:
    """Set the context of a running task; returns what `unbind_task` needs to put back the context before it."""
    return job_id_var.set(job_id), task_var.set(task), task_id_var.set(task_id)


def unbind_task(tokens: TaskTokens) -> None:
    for var, token in zip((job_id_var, task_var, task_id_var), tokens, strict=True):
        var.reset(token)
