"""The sweeper, and the pass the API makes when it starts: jobs left in `received` reach the queue."""

import dataclasses
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, col, update

from core import jobs
from core.sweeper import sweep_once
from producers.api.app import create_app
from producers.api.deps import Services
from schemas.statuses import JobStatus
from schemas.tables import Job, utcnow
from tests.utils.factories import make_device, make_job
from tests.utils.fakes import RecordingPublisher
from tests.utils.processes import wait_for


def age(services: Services, job_id: str, seconds: float) -> None:
    with Session(services.engine) as session:
        stamp = utcnow() - timedelta(seconds=seconds)
        session.execute(update(Job).where(col(Job.id) == job_id).values(updated_at=stamp))
        session.commit()


def session_factory(services: Services) -> Session:
    return Session(services.engine, expire_on_commit=False)


def test_sweep_enqueues_received_jobs_and_gives_up_after_the_limit(
    services: Services, publisher: RecordingPublisher
) -> None:
    with Session(services.engine, expire_on_commit=False) as session:
        device, _ = make_device(session)
        job = make_job(session, device)
    assert (
        sweep_once(lambda: session_factory(services), publisher, services.settings, services.blobs)["enqueued"] == 0
    )  # too fresh
    age(services, job.id, 60)
    assert sweep_once(lambda: session_factory(services), publisher, services.settings, services.blobs) == {
        "enqueued": 1, "failed": 0, "unreachable": 0, "uploads_expired": 0, "runs_resent": 0,
        "runs_failed": 0}  # fmt: skip
    assert publisher.photos == [(job.id, job.blob_key)]
    with Session(services.engine) as session:
        assert jobs.get_job(session, job.id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    for _ in range(services.settings.SWEEP_MAX_ENQUEUES):  # its messages keep getting lost
        age(services, job.id, services.settings.SWEEP_STALE_AFTER_S + 1)
        sweep_once(lambda: session_factory(services), publisher, services.settings, services.blobs)
    with Session(services.engine) as session:
        stored = jobs.get_job(session, job.id)
    assert stored is not None
    assert stored.status == JobStatus.FAILED
    assert len(publisher.photos) == services.settings.SWEEP_MAX_ENQUEUES


def test_sweep_stops_while_the_broker_is_down(services: Services, publisher: RecordingPublisher) -> None:
    with Session(services.engine, expire_on_commit=False) as session:
        device, _ = make_device(session)
        first, second = make_job(session, device, "a", b"a"), make_job(session, device, "b", b"b")
    age(services, first.id, 60)
    age(services, second.id, 60)
    publisher.down = True
    counts = sweep_once(lambda: session_factory(services), publisher, services.settings, services.blobs)
    assert counts == {"enqueued": 0, "failed": 0, "unreachable": 1, "uploads_expired": 0, "runs_resent": 0,
                      "runs_failed": 0}  # fmt: skip
    with Session(services.engine) as session:
        assert {j.status for j in jobs.jobs_to_sweep(session, utcnow(), timedelta(0), timedelta(hours=1))} == {
            JobStatus.RECEIVED}  # fmt: skip


def test_the_api_sweeps_once_when_it_starts(services: Services, publisher: RecordingPublisher) -> None:
    with Session(services.engine, expire_on_commit=False) as session:
        device, _ = make_device(session)
        job = make_job(session, device)
    age(services, job.id, 60)
    with TestClient(create_app(dataclasses.replace(services), sweep_on_startup=True)):
        wait_for(lambda: publisher.photos, 10, "the startup sweep")
    assert publisher.photos == [(job.id, job.blob_key)]
