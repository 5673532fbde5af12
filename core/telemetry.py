"""Counters every worker process adds to, kept in one Redis hash per deployment (core.namespace) so that `/metrics`
on any API process reports the whole fleet, whichever machine a worker runs on, and no other deployment's. Prometheus
sees them as counters; a Redis restart resets them, which Prometheus' rate() takes as a counter reset."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import redis

from core.namespace import Namespace

log = logging.getLogger(__name__)

SEPARATOR = "|"


def field_name(name: str, labels: Mapping[str, str]) -> str:
    return SEPARATOR.join([name, *(f"{key}={labels[key]}" for key in sorted(labels))])


def parse_field(field: str) -> tuple[str, dict[str, str]]:
    name, *pairs = field.split(SEPARATOR)
    return name, dict(pair.split("=", 1) for pair in pairs)


def add(
    client: redis.Redis, namespace: Namespace, increments: Mapping[tuple[str, frozenset[tuple[str, str]]], float]
) -> None:
    """Add to several counters in one round trip. Losing a count is better than failing a task: errors are logged."""
    try:
        pipe = client.pipeline(transaction=False)
        for (name, labels), amount in increments.items():
            pipe.hincrbyfloat(namespace.counters, field_name(name, dict(labels)), amount)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("counters not updated: %s", exc)


def read(client: redis.Redis, namespace: Namespace) -> list[tuple[str, dict[str, str], float]]:
    raw: dict[bytes, bytes] = client.hgetall(namespace.counters)  # type: ignore[assignment]
    rows = [(*parse_field(key.decode()), float(value)) for key, value in raw.items()]
    return sorted(rows, key=lambda row: (row[0], sorted(row[1].items())))


def unknown(client: redis.Redis, namespace: Namespace, name: str, label: str, allowed: Collection[str]) -> list[bytes]:
    """The fields of counter `name` whose `label` is not one of `allowed`: series an older release let in."""
    fields = (field for field, _ in client.hscan_iter(namespace.counters, match=f"{name}{SEPARATOR}*"))
    return [field for field in fields if parse_field(field.decode())[1].get(label) not in allowed]


def drop_unknown(client: redis.Redis, namespace: Namespace, name: str, label: str, allowed: Collection[str]) -> int:
    """Delete those counters, so that `/metrics` shows a fixed set of series; how many went."""
    stale = unknown(client, namespace, name, label, allowed)
    if stale:
        client.hdel(namespace.counters, *stale)
    return len(stale)
