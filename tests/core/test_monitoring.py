"""One aggregation tick over real figures: jobs finished with timings and image statistics, feedback, a champion
with its training reference, queues in Redis (fakeredis: the tick only reads list lengths)."""

from __future__ import annotations

import uuid

import fakeredis
from sqlalchemy import func
from sqlmodel import Session, select

from core import jobs, monitoring, registry
from core.config import Settings
from core.feedback import record_feedback
from core.namespace import Namespace
from ml.drift import reference
from ml.imaging import PreprocessConfig, decode, prepare
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.tables import Device, FeedbackSource, MetricPoint, ModelAliasName, ModelVersion, utcnow
from tests.utils.factories import SAMPLES, label_event, make_device, make_job


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(MetricPoint)).one()


CONFIG = Settings(DRIFT_MIN_PHOTOS=10, METRICS_FEEDBACK_LAST_N=50)
OURS, THEIRS = Namespace("a1a1a1a1a1a1"), Namespace("b2b2b2b2b2b2")


def photo_stats() -> list[dict[str, float]]:
    paths = sorted(SAMPLES.glob("cassava/*/*.jpg"))
    return [prepare(decode(path.read_bytes(), 50_000_000), PreprocessConfig()).stats for path in paths]


def test_a_tick_stores_every_figure_the_dashboard_draws(session: Session) -> None:
    stats = photo_stats()
    session.add(ModelVersion(version="v1", sha256="0" * 64, blob_key="models/v1.pt", made_by="test",
                             metrics={"input_reference": reference(stats, {"cmd": 1, "healthy": 1})}))  # fmt: skip
    session.commit()
    registry.set_alias(session, ModelAliasName.CHAMPION, "v1", "test")
    device, _ = make_device(session)
    for i, image_stats in enumerate(stats[:20]):
        job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
        label = "cmd" if i % 2 else "healthy"
        finding = Finding(label=label, confidence=0.9, model_version="v1", stats=image_stats,
                          timings_ms={"decode": 10.0 + i, "model": 100.0 + i})  # fmt: skip
        jobs.finish(session, job.id, finding)
        truth = "cmd" if i % 4 else "cgm"  # every "cmd" answer is right, no "healthy" one
        record_feedback(session, label_event(job.id, truth, FeedbackSource.AGRONOMIST))
    rejected = make_job(session, device, key="dark", data=b"dark")
    jobs.finish(session, rejected.id, Finding(reason=RejectReason.TOO_DARK))
    failed = make_job(session, device, key="broken", data=b"broken")
    jobs.fail(session, failed.id, "boom")
    queues = fakeredis.FakeRedis()
    queues.rpush(OURS.queue("inference"), b"m1", b"m2")
    queues.hset(OURS.unacked, "tag-1", b"m0")
    # Another deployment's messages on the same Redis database, and a queue of the layout before namespaces.
    queues.rpush(THEIRS.queue("inference"), b"t1", b"t2", b"t3")
    queues.rpush(THEIRS.queue("events"), b"t4")
    queues.hset(THEIRS.unacked, "tag-2", b"t0")
    queues.rpush("inference", b"old")

    points = monitoring.tick(session, queues, OURS, CONFIG, utcnow())

    figures = {(p.name, p.key, p.model_version): p.value for p in points}
    assert figures[("photos_per_minute", "", None)] == 22 / 5
    assert figures[("rejection_rate", "too_dark", None)] == round(1 / 22, 6)
    assert figures[("failure_rate", "", None)] == round(1 / 22, 6)
    assert figures[("latency_ms", "model:p50", None)] == 109.5
    assert ("latency_ms", "end_to_end:p99", None) in figures
    assert figures[("queue_length", "inference", None)] == 2
    assert figures[("queue_length", "events", None)] == 0
    assert figures[("queue_length", "in_flight", None)] == 1
    assert figures[("labelled", "agronomist", "v1")] == 20
    assert figures[("accuracy", "agronomist", "v1")] == 0.5
    assert figures[("confusion", "cmd>cmd", "v1")] == 10
    assert figures[("confusion", "cmd>healthy", "v1")] == 5
    assert figures[("confusion", "cgm>healthy", "v1")] == 5
    assert ("ece", "trusted", "v1") in figures
    assert figures[("drift_psi", "class_mix", "v1")] < 0.01  # half cmd, half healthy, as in training
    assert ("drift_psi", "max", "v1") in figures
    assert count(session) == len(points)


def test_one_phone_moves_the_farmer_and_trusted_figures_by_its_share_only(session: Session) -> None:
    """What operators read to decide (and the accuracy rule reads too): one phone's thirty wrong labels were the
    whole of the last twenty farmers' labels, accuracy 0.0; now it is behind two of them, as MAX_DEVICE_SHARE says."""
    config = Settings(FARMERS_TO_AGREE=1, MAX_DEVICE_SHARE=0.1, METRICS_FEEDBACK_LAST_N=20)
    session.add(ModelVersion(version="v1", sha256="0" * 64, blob_key="models/v1.pt", made_by="test"))
    session.commit()
    registry.set_alias(session, ModelAliasName.CHAMPION, "v1", "test")

    def said(device: Device, truth: str) -> None:  # of a photo of its own the champion took for cmd
        job = make_job(session, device, key=uuid.uuid4().hex, data=uuid.uuid4().bytes)
        jobs.finish(session, job.id, Finding(label="cmd", confidence=0.9, model_version="v1"))
        record_feedback(session, label_event(job.id, truth, FeedbackSource.FARMER, device.id))

    for n in range(18):
        said(make_device(session, f"farmer {n}")[0], "cmd")  # eighteen phones, each right once
    flood, _ = make_device(session, "one phone")
    for _ in range(30):
        said(flood, "cbsd")

    points = monitoring.tick(session, fakeredis.FakeRedis(), OURS, config, utcnow())

    figures = {(p.name, p.key): p.value for p in points if p.model_version == "v1"}
    for source in ("farmer", "trusted"):
        assert (figures[("labelled", source)], figures[("accuracy", source)]) == (20, 0.9)
    assert ("labelled", "agronomist") not in figures
