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
from ml.drift import reference
from ml.imaging import PreprocessConfig, decode, prepare
from schemas.findings import Finding
from schemas.reasons import RejectReason
from schemas.tables import FeedbackSource, MetricPoint, ModelAliasName, ModelVersion, utcnow
from schemas.tasks import FeedbackEvent
from tests.utils.factories import SAMPLES, make_device, make_job


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(MetricPoint)).one()


CONFIG = Settings(DRIFT_MIN_PHOTOS=10, METRICS_FEEDBACK_LAST_N=50)


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
        event = FeedbackEvent(event_id=uuid.uuid4().hex, job_id=job.id, label=truth,
                              source=FeedbackSource.AGRONOMIST, created_at=utcnow())  # fmt: skip
        record_feedback(session, event)
    rejected = make_job(session, device, key="dark", data=b"dark")
    jobs.finish(session, rejected.id, Finding(reason=RejectReason.TOO_DARK))
    failed = make_job(session, device, key="broken", data=b"broken")
    jobs.fail(session, failed.id, "boom")
    queues = fakeredis.FakeRedis()
    queues.rpush("inference", b"m1", b"m2")

    points = monitoring.tick(session, queues, CONFIG, utcnow())

    figures = {(p.name, p.key, p.model_version): p.value for p in points}
    assert figures[("photos_per_minute", "", None)] == 22 / 5
    assert figures[("rejection_rate", "too_dark", None)] == round(1 / 22, 6)
    assert figures[("failure_rate", "", None)] == round(1 / 22, 6)
    assert figures[("latency_ms", "model:p50", None)] == 109.5
    assert ("latency_ms", "end_to_end:p99", None) in figures
    assert figures[("queue_length", "inference", None)] == 2
    assert figures[("queue_length", "events", None)] == 0
    assert figures[("labelled", "agronomist", "v1")] == 20
    assert figures[("accuracy", "agronomist", "v1")] == 0.5
    assert figures[("confusion", "cmd>cmd", "v1")] == 10
    assert figures[("confusion", "cmd>healthy", "v1")] == 5
    assert figures[("confusion", "cgm>healthy", "v1")] == 5
    assert ("ece", "trusted", "v1") in figures
    assert figures[("drift_psi", "class_mix", "v1")] < 0.01  # half cmd, half healthy, as in training
    assert ("drift_psi", "max", "v1") in figures
    assert count(session) == len(points)
