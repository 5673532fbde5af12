"""The review scenario's measure (mhogo/review_scenario.py): labels that matter per agronomist-hour through the queue
and in upload order for the same time, and its chart. The scenario itself runs the whole stack (`mhogo scenario
review`, figures in the README); here, its arithmetic on a constructed queue."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mhogo.review_scenario import Answer, ReviewScenarioConfig, compare, draw
from schemas.statuses import JobStatus
from schemas.tables import Job


def job(job_id: str, label: str, top: float) -> Job:
    second = round(1 - top, 2)
    return Job(id=job_id, device_id=1, idempotency_key=job_id, content_sha256=job_id, blob_key="x",
               content_type="image/jpeg", size_bytes=1, status=JobStatus.CLASSIFIED, label=label,
               probabilities={label: top, "cbsd" if label != "cbsd" else "cmd": second})  # fmt: skip


def test_the_queue_is_measured_against_upload_order_for_the_same_agronomist_time(tmp_path: Path) -> None:
    # Upload order: four confident right answers first, then a wrong one, an unsure one, and a contested one.
    jobs = {f"j{n}": (job(f"j{n}", "cmd", 0.95), "cmd") for n in range(4)}
    jobs |= {"wrong": (job("wrong", "cmd", 0.9), "cgm"), "unsure": (job("unsure", "cmd", 0.55), "cmd"),
             "contested": (job("contested", "healthy", 0.9), "healthy")}  # fmt: skip
    config = ReviewScenarioConfig(tmp_path, tmp_path, label_s=36.0)  # 100 labels an hour
    answers = [Answer(36.0 * (i + 1), "a", i, job_id, "cmd", False, []) for i, job_id in
               enumerate(["contested", "wrong", "wrong", "unsure"])]  # fmt: skip
    figures = compare(answers, jobs, {"contested"}, config, unsure_margin=0.2)
    assert (figures["photos"], figures["photos_that_matter"], figures["labels"]) == (7, 3, 4)
    assert figures["curves"]["queue"] == [1, 2, 2, 3]  # a second label on the same photo brings nothing new
    assert figures["curves"]["upload_order"] == [0, 0, 0, 0]  # four labels in upload order: the confident ones
    assert (figures["queue_per_hour"], figures["upload_order_per_hour"], figures["ratio"]) == (75.0, 0.0, None)
    every = figures["to_every_one_the_queue_finds"]  # all 3 that matter: the 4th label through the queue; the 7th
    assert (every["photos"], every["labels"], every["upload_order_takes_times_longer"]) == (
        3, {"queue": 4, "upload_order": 7}, 1.75)  # fmt: skip
    assert every["agronomist_hours"] == {"queue": 0.04, "upload_order": 0.07}
    chart = draw({"figures": figures}, tmp_path / "curves.png")
    assert chart is not None
    with Image.open(chart) as image:
        assert image.size == (840, 480)
