"""What operators see through the API: `/metrics` for Prometheus, and the dashboard. Both open to a person with the
operator role (their browser session from the login page, or their API token), and, for scripts and as a way in when
no operator account exists yet, to HTTP basic auth with MHOGO_FLOWER_USER / MHOGO_FLOWER_PASSWORD (Flower's login);
`/metrics` also takes MHOGO_METRICS_TOKEN, a read-only credential for Prometheus that opens nothing else. A device
token or an agronomist opens neither (403)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from typing import Annotated
from urllib.parse import urlencode

import redis
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from core import monitoring, telemetry
from core.users import TOKEN_PREFIX
from producers.api.auth import allowed, person_from
from producers.api.deps import Services, ServicesDep, SessionDep
from schemas.tables import Job, Role, utcnow

router = APIRouter(include_in_schema=False)
basic = HTTPBasic(auto_error=False, realm="mhogo operators")


NO_BASIC_LOGIN = ("Set MHOGO_FLOWER_PASSWORD to open the operator pages with basic auth, or log in as an operator "
                  "(`mhogo users add NAME --role operator`).")  # fmt: skip


class LoginFirst(Exception):
    """A browser asked for an operator page with no credential at all: it is sent to the login page."""

    def __init__(self, path: str) -> None:
        self.path = path


def operator_login(services: Services, credentials: HTTPBasicCredentials) -> str:
    """The break-glass login of MHOGO_FLOWER_USER / MHOGO_FLOWER_PASSWORD (Flower's too), over HTTP basic auth."""
    password = services.settings.FLOWER_PASSWORD
    if password is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_BASIC_LOGIN)
    ok = secrets.compare_digest(credentials.username.encode(), services.settings.FLOWER_USER.encode()) & (
        secrets.compare_digest(credentials.password.encode(), password.get_secret_value().encode())
    )
    if not ok:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Operator login required.",
                            headers={"WWW-Authenticate": 'Basic realm="mhogo operators"'})  # fmt: skip
    return credentials.username


def operator(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
) -> str:
    """Who may see the operators' pages: a person with the operator role (their session, or their API token), or
    the basic-auth operator login. A device token or another role: 403. Nothing at all: a browser goes to the login
    page, anything else gets 401 with a basic-auth challenge."""
    if credentials is not None:
        return operator_login(services, credentials)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    person = person_from(request, session, token.strip() if scheme.lower() == "bearer" else None)
    if person is not None:
        allowed(person.user, (Role.OPERATOR,))
        return person.user.name
    if "text/html" in request.headers.get("accept", ""):
        raise LoginFirst(request.url.path)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Operator login required.",
                        headers={"WWW-Authenticate": 'Basic realm="mhogo operators"'})  # fmt: skip


async def to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginFirst)
    return RedirectResponse(f"/login?{urlencode({'next': exc.path})}", status.HTTP_303_SEE_OTHER)


OperatorDep = Annotated[str, Depends(operator)]


def metrics_reader(
    request: Request,
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(basic)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """Who may scrape /metrics: Prometheus with MHOGO_METRICS_TOKEN as a bearer token (a credential that opens
    nothing else), or an operator with the login."""
    token = services.settings.METRICS_TOKEN
    scheme, _, presented = (authorization or "").partition(" ")
    if token is not None and scheme.lower() == "bearer" and not presented.strip().startswith(TOKEN_PREFIX):
        if secrets.compare_digest(presented.strip().encode(), token.get_secret_value().encode()):
            return "prometheus"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Unknown metrics token.",
                            headers={"WWW-Authenticate": 'Bearer realm="mhogo metrics"'})  # fmt: skip
    return operator(request, services, session, credentials)


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
