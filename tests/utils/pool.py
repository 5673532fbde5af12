"""Looking inside a live Celery worker from a test: which pool process is running which photo right now (Celery's
own `inspect active`), and what the worker did with each job (its JSON log lines)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery

from schemas.queues import TaskName

# workers/inference.py logs one of these, with the job id and the task id, only when its conditional UPDATE stored
# the outcome (core.jobs.finish returned True): a second stored result for one job would be a second line.
STORED_OUTCOMES = ("job classified", "job rejected")


@dataclass(frozen=True)
class RunningPhoto:
    """A diagnose task a pool process has accepted and not yet finished."""

    pid: int
    task_id: str
    job_id: str


def running_photos(app: Celery, worker_name: str) -> list[RunningPhoto]:
    """The photos the worker's pool processes are running, each with the pid of the process that holds it."""
    replies = app.control.inspect(destination=[worker_name], timeout=1.0, limit=1).active() or {}
    running = []
    for request in replies.get(worker_name, []):
        if request.get("name") == TaskName.DIAGNOSE.value and request.get("worker_pid") and request.get("args"):
            running.append(RunningPhoto(int(request["worker_pid"]), str(request["id"]), str(request["args"][0])))
    return running


def gone(pid: int) -> bool:
    """True once `pid` has died: no such process, or a zombie (a killed pool process stays one until the worker
    reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def log_records(log: Path) -> list[dict[str, Any]]:
    """Every JSON line of a service's log; text lines, and a line cut short by a SIGKILL, are skipped."""
    records = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def job_log(log: Path, job_id: str) -> list[str]:
    """The messages of the worker's log lines about one job, in order: the pool process's lines carry its job id,
    and Celery's `Task ... received` in the worker's main process names it in the task's arguments."""
    return [
        str(record.get("message"))
        for record in log_records(log)
        if record.get("job_id") == job_id or job_id in str((record.get("data") or {}).get("args", ""))
    ]


@dataclass(frozen=True)
class StoredOutcome:
    job_id: str
    task_id: str
    at: float  # seconds since the epoch, to the millisecond the log line carries


def stored_outcomes(log: Path, job_ids: set[str]) -> list[StoredOutcome]:
    """Each time the worker stored the outcome of one of `job_ids`, in log order."""
    return [
        StoredOutcome(record["job_id"], str(record.get("task_id")), log_time(record["time"]))
        for record in log_records(log)
        if record.get("message") in STORED_OUTCOMES and record.get("job_id") in job_ids
    ]


def times_stored(log: Path, job_ids: set[str]) -> Counter[str]:
    """How many outcomes the worker stored per job: 1 for each of `job_ids` when none was lost or processed twice."""
    counts = Counter(outcome.job_id for outcome in stored_outcomes(log, job_ids))
    return Counter({job_id: counts[job_id] for job_id in job_ids})


def log_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
