"""Job storage on SQLite and PostgreSQL: every transition is conditional, so races cannot undo a finished job."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col

from core import jobs, retention
from core.blobs import BlobStore
from core.config import Settings
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.statuses import JobStatus
from schemas.tables import Job, new_id, utcnow
from tests.utils.factories import create_job, make_device, make_job


def test_same_key_gives_the_same_job(session: Session) -> None:
    device, _ = make_device(session)
    first = make_job(session, device, key="k")
    assert device.id is not None
    again, created = create_job(
        session, jobs.NewPhoto(device.id, "k", first.content_sha256, first.blob_key, "image/jpeg", 5)
    )
    assert not created
    assert again.id == first.id


def test_keys_are_scoped_per_device(session: Session) -> None:
    one, _ = make_device(session, "one")
    two, _ = make_device(session, "two")
    assert make_job(session, one, key="k").id != make_job(session, two, key="k").id


def test_lifecycle_received_queued_processing_classified(session: Session) -> None:
    device, _ = make_device(session)
    job = make_job(session, device)
    assert job.status == JobStatus.RECEIVED
    assert jobs.record_enqueued(session, job.id)
    assert jobs.get_job(session, job.id).status == JobStatus.QUEUED  # type: ignore[union-attr]
    assert jobs.claim(session, job.id) is jobs.Claim.CLAIMED
    assert jobs.get_job(session, job.id).status == JobStatus.PROCESSING  # type: ignore[union-attr]
    finding = Finding(label="cmd", confidence=0.9, probabilities={"cmd": 0.9}, model_version="v1",
                      timings_ms={"model": 12.0})  # fmt: skip
    assert jobs.finish(session, job.id, finding)
    stored = jobs.get_job(session, job.id)
    assert stored is not None
    assert (stored.status, stored.label, stored.model_version) == (JobStatus.CLASSIFIED, "cmd", "v1")
    assert stored.timings_ms == {"model": 12.0}
    assert stored.finished_at is not None


def test_a_finished_job_stays_finished(session: Session) -> None:
    device, _ = make_device(session)
    job = make_job(session, device)
    assert jobs.finish(session, job.id, Finding(reason=RejectReason.BLURRY))
    assert not jobs.finish(session, job.id, Finding(label="cmd"))
    assert jobs.claim(session, job.id) is jobs.Claim.FINISHED
    assert not jobs.fail(session, job.id, "late failure")
    assert not jobs.record_enqueued(session, job.id)
    stored = jobs.get_job(session, job.id)
    assert stored is not None
    assert (stored.status, stored.reason_code, stored.label) == (JobStatus.REJECTED, "blurry", None)


def test_a_claim_tells_a_finished_job_from_one_the_database_does_not_have(session: Session) -> None:
    """Both change nothing; only the first may be acknowledged as done (a task of another deployment's, once
    acknowledged as "already finished", left its own job queued until the sweep)."""
    device, _ = make_device(session)
    job = make_job(session, device)
    jobs.fail(session, job.id, "gave up")
    assert jobs.claim(session, job.id) is jobs.Claim.FINISHED
    assert jobs.claim(session, new_id()) is jobs.Claim.UNKNOWN
    assert jobs.get_job(session, job.id).status == JobStatus.FAILED  # type: ignore[union-attr]


def test_enqueue_after_processing_started_keeps_processing(session: Session) -> None:
    device, _ = make_device(session)
    job = make_job(session, device)
    jobs.claim(session, job.id)  # the worker was faster than the API's bookkeeping
    assert jobs.record_enqueued(session, job.id)
    assert jobs.get_job(session, job.id).status == JobStatus.PROCESSING  # type: ignore[union-attr]


def test_device_sees_only_its_own_jobs(session: Session) -> None:
    one, _ = make_device(session, "one")
    two, _ = make_device(session, "two")
    job = make_job(session, one)
    assert jobs.get_job(session, job.id, one.id) is not None
    assert jobs.get_job(session, job.id, two.id) is None


def test_sweep_finds_unqueued_and_stale_jobs(session: Session) -> None:
    device, _ = make_device(session)
    fresh = make_job(session, device, key="fresh")
    stale = make_job(session, device, key="stale", data=b"2")
    done = make_job(session, device, key="done", data=b"3")
    jobs.record_enqueued(session, stale.id)
    jobs.finish(session, done.id, Finding(reason=RejectReason.BLURRY))
    now = utcnow()
    found = {j.id for j in jobs.jobs_to_sweep(session, now, timedelta(seconds=10), timedelta(seconds=60))}
    assert found == set()
    later = now + timedelta(seconds=30)
    found = {j.id for j in jobs.jobs_to_sweep(session, later, timedelta(seconds=10), timedelta(seconds=60))}
    assert found == {fresh.id}
    much_later = now + timedelta(seconds=120)
    found = {j.id for j in jobs.jobs_to_sweep(session, much_later, timedelta(seconds=10), timedelta(seconds=60))}
    assert found == {fresh.id, stale.id}


def test_outcomes_are_counted_by_status_and_reason(session: Session) -> None:
    device, _ = make_device(session)
    rejections = ["not_cassava_leaf", "not_cassava_leaf", "too_dark"]
    for n, reason in enumerate(rejections):
        job = make_job(session, device, key=f"r{n}")
        jobs.finish(session, job.id, Finding(reason=RejectReason(reason), model_version="v1"))
    done = make_job(session, device, key="c")
    jobs.finish(session, done.id, Finding(label="cmd", model_version="v1"))
    make_job(session, device, key="waiting")
    counts = jobs.outcome_counts(session, utcnow() - timedelta(hours=1))
    assert counts["jobs"] == 5
    assert counts["by_status"] == {"rejected": 3, "classified": 1, "received": 1}
    assert counts["rejected_by_reason"] == {"not_cassava_leaf": 2, "too_dark": 1}
    assert jobs.outcome_counts(session, utcnow() + timedelta(minutes=1))["jobs"] == 0
    gated = jobs.get_job(session, jobs.find_job(session, device.id or 0, "r0").id)  # type: ignore[union-attr]
    assert gated is not None
    assert gated.model_version == "v1"  # the model whose leaf gate turned it away


def test_a_failed_job_whose_photo_retention_deleted_is_not_requeued(session: Session, tmp_path: Path) -> None:
    device, _ = make_device(session)
    job = make_job(session, device)
    jobs.fail(session, job.id, "boom")
    session.execute(update(Job).where(col(Job.id) == job.id).values(created_at=utcnow() - timedelta(days=100)))
    session.commit()
    passed = retention.run_pass(lambda: Session(session.get_bind()), BlobStore(tmp_path / "blobs"),
                                Settings(HOME=tmp_path), utcnow())  # fmt: skip
    assert passed.counts["photos"] == 1
    assert jobs.requeue(session, job.id) is None  # nothing left to diagnose
    assert session.get(Job, job.id, populate_existing=True).status == JobStatus.FAILED  # type: ignore[union-attr]


def test_a_devices_jobs_page_by_page_newest_first(session: Session) -> None:
    """Keyset pages on both databases: jobs made at one instant are ordered by id, none lost or repeated between
    pages; another device's jobs never appear; a cursor survives its trip through the phone."""
    device, _ = make_device(session, "mine")
    other, _ = make_device(session, "theirs")
    assert device.id is not None
    now = utcnow()
    made = {key: make_job(session, device, key, key.encode()) for key in "abcde"}
    make_job(session, other, "x", b"x")
    for key, minutes in zip("abcde", [50, 40, 30, 30, 10], strict=True):
        session.exec(update(Job).where(col(Job.id) == made[key].id).values(created_at=now - timedelta(minutes=minutes)))
    session.commit()
    newest_first = ["e", *sorted("cd", key=lambda key: made[key].id, reverse=True), "b", "a"]
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        page, after = jobs.device_jobs(session, device.id, 2, cursor)
        seen += [job.idempotency_key for job in page]
        cursor = jobs.JobCursor.decode(after.encode()) if after is not None else None
    assert seen == newest_first
    assert cursor is None
    assert [job.idempotency_key for job in jobs.device_jobs(session, device.id, 10)[0]] == newest_first
