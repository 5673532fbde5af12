"""The log format every service writes: one JSON object per line, carrying the job id while a job is bound."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from core.logs import bind_job, bind_task, configure_logging, job_id_var, unbind_task

log = logging.getLogger("tests.logs")


pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    configure_logging("INFO", stream=out, service="test")
    return out


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_logged_inside_bind_job_carries_the_job_id_and_one_outside_does_not(stream: io.StringIO) -> None:
    with bind_job("job-1"):
        log.info("photo accepted", extra={"size_bytes": 1234})
    log.warning("nothing to do with a job")
    inside, outside = lines(stream)
    assert inside["job_id"] == "job-1"
    assert (inside["level"], inside["message"], inside["logger"]) == ("INFO", "photo accepted", "tests.logs")
    assert inside["size_bytes"] == 1234
    assert inside["service"] == "test"
    assert datetime.fromisoformat(str(inside["time"])).utcoffset() is not None  # ISO 8601 with its zone: UTC
    assert str(inside["time"]).endswith("Z")
    assert "job_id" not in outside
    assert outside["level"] == "WARNING"
    assert job_id_var.get() is None


def test_a_task_context_names_job_and_task_and_is_put_back_when_it_ends(stream: io.StringIO) -> None:
    tokens = bind_task("job-2", "mhogo.photos.store", "task-9")
    logging.getLogger("celery.app.trace").info("Task %s succeeded", "mhogo.photos.store")
    unbind_task(tokens)
    log.info("after")
    during, after = lines(stream)
    assert (during["job_id"], during["task"], during["task_id"]) == ("job-2", "mhogo.photos.store", "task-9")
    assert not {"job_id", "task", "task_id"} & set(after)


def test_configuring_again_keeps_one_handler_and_the_service_name() -> None:
    first = configure_logging("INFO", stream=io.StringIO(), service="worker")
    out = io.StringIO()
    configure_logging("INFO", stream=out)  # as Celery's setup_logging signal does in the worker
    handlers = logging.getLogger().handlers
    assert first not in handlers
    assert sum(h.get_name() == "mhogo" for h in handlers) == 1
    log.info("ready")
    assert lines(out)[0]["service"] == "worker"


def test_plain_text_when_json_is_off() -> None:
    out = io.StringIO()
    configure_logging("INFO", json_logs=False, stream=out)
    with bind_job("job-3"):
        log.info("job rejected", extra={"reason": "too_dark"})
    line = out.getvalue().strip()
    assert "INFO tests.logs: job rejected" in line
    assert "reason=too_dark" in line
    assert "job_id=job-3" in line
