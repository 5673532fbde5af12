"""What operators see through the API: `/metrics` for Prometheus, and the dashboard. Both behind HTTP basic auth
with the operator login (MHOGO_FLOWER_USER / MHOGO_FLOWER_PASSWORD, the same as Flower's); `/metrics` also takes
MHOGO_METRICS_TOKEN, a read-only credential for Prometheus that opens nothing else. Device tokens open neither."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from typing import Annotated

import redis
from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from core import monitoring, telemetry
from producers.api.deps import Services, ServicesDep
from schemas.tables import Job, utcnow

router = APIRouter(include_in_schema=False)
basic = HTTPBasic(auto_error=False, realm="mhogo operators")


def operator(services: ServicesDep, credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> str:
    password = services.settings.FLOWER_PASSWORD
    if password is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Set MHOGO_FLOWER_PASSWORD to open the operator pages."
        )
    ok = credentials is not None and (
        secrets.compare_digest(credentials.username.encode(), services.settings.FLOWER_USER.encode())
        & secrets.compare_digest(credentials.password.encode(), password.get_secret_value().encode())
    )
    if not ok:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Operator login required.",
                            headers={"WWW-Authenticate": 'Basic realm="mhogo operators"'})  # fmt: skip
    assert credentials is not None
    return credentials.username


OperatorDep = Annotated[str, Depends(operator)]


def metrics_reader(
    services: ServicesDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """Who may scrape /metrics: Prometheus with MHOGO_METRICS_TOKEN as a bearer token (a credential that opens
    nothing else), or an operator with the login."""
    token = services.settings.METRICS_TOKEN
    scheme, _, presented = (authorization or "").partition(" ")
    if token is not None and scheme.lower() == "bearer":
        if secrets.compare_digest(presented.strip().encode(), token.get_secret_value().encode()):
            return "prometheus"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Unknown metrics token.",
                            headers={"WWW-Authenticate": 'Bearer realm="mhogo metrics"'})  # fmt: skip
    return operator(services, credentials)


MetricsReaderDep = Annotated[str, Depends(metrics_reader)]


class MhogoCollector(Collector):
    """Read at scrape time: the fleet's task counters from Redis, job counts from the database, and the figures of
    the latest aggregation tick as gauges (per model version where they have one)."""

    def __init__(self, services: Services, client: redis.Redis) -> None:
        self.services, self.client = services, client

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        for name, labels, value in telemetry.read(self.client, self.services.deployment()):
            base = name.removesuffix("_total")
            family = families.get(base) or CounterMetricFamily(base, f"mhogo {base.replace('_', ' ')}",
                                                               labels=sorted(labels))  # fmt: skip
            families[base] = family
            family.add_metric([labels[key] for key in sorted(labels)], value)
        yield from families.values()
        with Session(self.services.engine) as session:
            jobs = GaugeMetricFamily("mhogo_jobs", "Jobs by status, all time", labels=["status"])
            for job_status, count in session.exec(select(Job.status, func.count()).group_by(col(Job.status))).all():
                jobs.add_metric([str(job_status)], count)
            yield jobs
            points = monitoring.latest(
                session, utcnow() - timedelta(seconds=3 * self.services.settings.METRICS_INTERVAL_S)
            )
        gauges: dict[str, GaugeMetricFamily] = {}
        for row in points:
            name = f"mhogo_{row.name}"
            gauge = gauges.get(name) or GaugeMetricFamily(
                name, f"latest tick: {row.name}", labels=["key", "model_version"]
            )
            gauges[name] = gauge
            gauge.add_metric([row.key, row.model_version or ""], row.value)
        yield from gauges.values()


@cache
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@router.get("/metrics")
def metrics(services: ServicesDep, _: MetricsReaderDep) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MhogoCollector(services, redis_client(services.settings.REDIS_URL)))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
