"""Messages waiting outside the deployment's queues that may be its own. Every sweep takes back those that name a
job its database knows (job ids are random: no other deployment has one of them), and leaves every other message
for the deployment whose it is, since what names only a run or a phone (numbered from 1 in every database) or
nothing at all (a tick of beat) cannot be told apart from another deployment's:

- tasks a worker set aside (the namespace's `refused` list: workers.base `refuse`), when two databases share one
  deployment id (a copy of the database, restored beside the original) and the workers of the other database
  refused them MHOGO_MAX_DELIVERIES times: sent again, as new messages;
- messages of the layout before namespaces: the lists `inference`, `events` and `retraining` at the top of the
  Redis database, queued by the release before this one and left there by the upgrade, and those its workers held
  when they stopped (kombu's `unacked` hash, once older than the visibility timeout, as kombu itself would restore
  them): moved, as they are, to the front of the deployment's queue.

A message for a job the database has finished is this deployment's and done: dropped. A retraining run whose message
is left behind is sent again by the sweeper (core.sweeper `sweep_runs`), as one the broker lost."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import redis
from sqlmodel import Session

from core.namespace import Namespace
from core.publisher import Publisher
from schemas.queues import QueueName, TaskName
from schemas.statuses import TERMINAL_STATUSES
from schemas.tables import Job

log = logging.getLogger(__name__)

LOOKED_AT = 500  # messages looked at per list per sweep, the oldest first
LEGACY_UNACKED, LEGACY_UNACKED_INDEX = "unacked", "unacked_index"  # kombu's names, without a prefix

# Each moves one message only if it is still where it was looked at: a worker of another deployment still on the
# release before, or another deployment's sweep, may have taken it meanwhile.
_MOVE = (
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[1]) return 1 end return 0"
)
_MOVE_UNACKED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
"""


class Verdict(StrEnum):
    TAKE = "take"  # the database knows what it names: do it here
    DROP = "drop"  # this deployment's, and done already: nothing left to do
    LEAVE = "leave"  # the database does not know it: another deployment's, for it to take


def verdict(session: Session, task: str | None, args: Sequence[Any]) -> Verdict:
    first = args[0] if args else None
    if task == TaskName.DIAGNOSE and isinstance(first, str):
        job = session.get(Job, first)
        if job is None:
            return Verdict.LEAVE
        return Verdict.DROP if job.status in TERMINAL_STATUSES else Verdict.TAKE
    if task == TaskName.FEEDBACK and isinstance(first, dict):
        return Verdict.TAKE if _known_job(session, first.get("job_id")) else Verdict.LEAVE
    if task == TaskName.CLIENT_EVENTS and isinstance(first, dict):  # the phone's device id is no proof: its jobs are
        events = first.get("events") or []
        named = [event.get("job_id") for event in events if isinstance(event, dict)]
        return Verdict.TAKE if any(_known_job(session, job_id) for job_id in named) else Verdict.LEAVE
    return Verdict.LEAVE


def _known_job(session: Session, job_id: object) -> bool:
    return isinstance(job_id, str) and session.get(Job, job_id) is not None


def take_back(session: Session, client: redis.Redis, namespace: Namespace, publisher: Publisher,
              visibility_timeout_s: float) -> dict[str, int]:  # fmt: skip
    """One pass over every list above: how many messages it sent again (set aside), moved (old layout), dropped."""
    counts = {"strays_resent": 0, "strays_moved": 0, "strays_dropped": 0}
    counts["strays_resent"], counts["strays_dropped"] = resend_refused(session, client, namespace, publisher)
    for queue in QueueName:
        moved, dropped = adopt_legacy_queue(session, client, namespace, queue)
        counts["strays_moved"] += moved
        counts["strays_dropped"] += dropped
    counts["strays_moved"] += adopt_legacy_unacked(session, client, namespace, time.time() - visibility_timeout_s)
    if any(counts.values()):
        log.warning("messages taken back from outside the deployment's queues: %s", counts)
    return counts


def resend_refused(
    session: Session, client: redis.Redis, namespace: Namespace, publisher: Publisher
) -> tuple[int, int]:
    sent = dropped = 0
    refused: list[bytes] = client.lrange(namespace.refused, 0, -1)  # type: ignore[assignment]
    for raw in (item.decode() for item in refused):
        record = json.loads(raw)
        decided = verdict(session, record.get("task"), record.get("args") or [])
        if decided is Verdict.LEAVE or not client.lrem(namespace.refused, 1, raw):
            continue  # not ours, or another sweep took it
        if decided is Verdict.DROP:
            dropped += 1
            continue
        try:
            publisher.publish_task(record["task"], record["args"])  # a new message: a new task id
        except Exception:
            client.lpush(namespace.refused, raw)  # the next sweep tries again
            raise
        sent += 1
    return sent, dropped


def adopt_legacy_queue(
    session: Session, client: redis.Redis, namespace: Namespace, queue: QueueName
) -> tuple[int, int]:
    moved = dropped = 0
    waiting: list[bytes] = client.lrange(queue.value, -LOOKED_AT, -1)  # type: ignore[assignment]
    for raw in (item.decode() for item in waiting):  # each to the front of the queue: the oldest ends up first
        decided = verdict(session, *task_of(raw))
        if decided is Verdict.DROP:
            dropped += int(client.lrem(queue.value, 1, raw))
        elif decided is Verdict.TAKE:
            moved += int(client.eval(_MOVE, 2, queue.value, namespace.queue(queue.value), raw))
    return moved, dropped


def adopt_legacy_unacked(session: Session, client: redis.Redis, namespace: Namespace, before: float) -> int:
    """What workers of the release before held when they stopped, delivered before `before`."""
    moved = 0
    tags: list[bytes] = client.zrevrangebyscore(LEGACY_UNACKED_INDEX, before, "-inf", 0, LOOKED_AT)  # type: ignore[assignment]
    for tag in tags:  # the latest first, so that the one delivered first is first again
        held: bytes | None = client.hget(LEGACY_UNACKED, tag)  # type: ignore[assignment]
        if held is None:
            continue
        message, _, routing_key = json.loads(held)
        raw = json.dumps(message)
        if routing_key in set(QueueName) and verdict(session, *task_of(raw)) is Verdict.TAKE:
            script = (_MOVE_UNACKED, 3, LEGACY_UNACKED, LEGACY_UNACKED_INDEX, namespace.queue(routing_key))
            moved += int(client.eval(*script, tag, held, raw))
    return moved


def task_of(raw: bytes | str) -> tuple[str | None, list[Any]]:
    """The task name and arguments of a message as kombu keeps it (Celery's message protocol 2, JSON body)."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(message["headers"]["task"]), list(args)
    except (ValueError, KeyError, TypeError, IndexError):
        return None, []
