"""The acceptance scenario of the loop on the real stack, with the promotion gate as shipped: a champion trained on
two batches of part of the sample photos serves; the rest arrive from the phone; agronomists' labels (the photos'
true classes) reach two aggregation workers at once; a rule fires; exactly one retraining run trains a challenger
with the whole recipe and judges both; the gate decides; an operator then promotes the challenger by hand, and photos
keep arriving across the switch, each with exactly one result.

What the gate must decide here: the two-batch champion answers cbb for every photo, so its cbb recall is 1.0 and
the rest 0. The challenger learnt, and about doubles the accuracy (0.2 -> 0.4 or 0.43 on the 30 judging photos, by
CPU), but gets only 4 of the 6 cbb photos, a fall of 0.333 where 0.10 is allowed: the gate keeps the champion, with
that reason. Every label is kept for judging (none trains), so the challenger learns from the base part alone, and
both models and the judging photos are the same on every run, whatever job ids the server draws; on one thread
each, the figures are too, on one machine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from core.config import Settings, settings
from mhogo.browser import screenshot_dashboard, screenshot_problems
from mhogo.scenario import ScenarioConfig, run_scenario
from ml.model import ModelConfig
from ml.train import TrainConfig
from tests.utils.factories import SAMPLES

pytestmark = pytest.mark.integration

# One small network trained for real in about 40 s on this machine; the champion gets two batches of it.
RECIPE = TrainConfig(model=ModelConfig.for_backbone("lite0"), soup=1, tta_views=1, batch_size=8, epochs=30,
                     val_fraction=0.0, test_fraction=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("scenario")
    seen: dict[str, Any] = {}

    def look(live: Settings, password: str) -> None:
        auth = (live.FLOWER_USER, password)
        url = live.public_url
        seen["html"] = httpx.get(f"{url}/ops", auth=auth, timeout=30).text
        seen["metrics"] = httpx.get(f"{url}/metrics", auth=auth, timeout=30).text
        seen["screenshot"] = screenshot_dashboard(f"{url}/ops", live.FLOWER_USER, password, home / "ops.png")

    # The accuracy rule reads the last 20 labels: the champion classifies all 20 cassava photos of the stream, so the
    # rule fires on the last label, once every label is stored, and the run finds them all. (The scenario's own
    # window is 60 % of the stream's cassava photos, in case its gates turn some away: 12 here, which fires early.)
    rules = {
        "MHOGO_TRIGGER_ACCURACY_LAST_N": "20",
        "MHOGO_RETRAIN_DRY_RUN": "false",  # the champion had two batches (quick); the challenger gets the recipe
        "MHOGO_FEEDBACK_HOLDOUT_SHARE": "1",  # every label judges: the same challenger and judging photos each run
        "MHOGO_TORCH_THREADS": "1",  # and the same figures on any machine
        "MHOGO_RETRAIN_TORCH_THREADS": "1",
    }
    config = ScenarioConfig(SAMPLES, home, quick=True, recipe=RECIPE, extra_env=rules, promote_kept=True,
                            before_stop=look)  # fmt: skip
    report = run_scenario(config, settings, out=print)
    return report | seen


def test_one_rule_fires_one_run_and_the_shipped_gate_keeps_the_champion(scenario: dict[str, Any]) -> None:
    run, checks = scenario["run"], scenario["checks"]
    assert checks["retraining_runs"] == 1
    assert run["rule"] == "accuracy_below"
    assert run["figures"]["labelled"] == 20
    assert run["figures"]["accuracy"] == 0.2  # the 4 cbb photos of the 20
    assert run["dataset"]["feedback_added"] == 0
    assert run["dataset"]["feedback_held_out"] == 20  # every label
    assert run["dataset_version"].startswith("ds-")  # the version of what it built, kept (core.datasets)
    assert run["challenger_dataset_version"] == run["dataset_version"]
    assert set(run["evaluation"]["sets"]) == {"holdout", "feedback"}
    champion, challenger = (run["evaluation"][who]["pooled"] for who in ("champion", "challenger"))
    assert champion["photos"] == challenger["photos"] == 30
    assert champion["recall"] == {"cbb": 1.0, "cbsd": 0.0, "cgm": 0.0, "cmd": 0.0, "healthy": 0.0}
    assert champion["accuracy"] == 0.2
    # The challenger's figure differs by a photo between CPUs (float order in training): 12 or 13 of the 30.
    assert 0.35 <= challenger["accuracy"] <= 0.5
    assert challenger["recall"]["cbb"] == pytest.approx(4 / 6, abs=1e-4)
    assert run["status"] == "kept"
    gain = challenger["accuracy"] - champion["accuracy"]
    assert run["decision"] == f"accuracy gain +{gain:.3f}, but cbb -0.333 falls by more than 0.100"


def test_an_operator_promotes_the_kept_challenger_and_the_workers_switch(scenario: dict[str, Any]) -> None:
    run, checks = scenario["run"], scenario["checks"]
    assert checks["champion"] == run["challenger"] != run["champion"]
    times = {event: datetime.fromisoformat(t) for event, t in checks["times"].items()}
    order = ["fired", "started", "finished", "promoted", "first_result_of_the_new_champion"]
    assert [times[event] for event in order] == sorted(times[event] for event in order)


def test_no_job_is_lost_or_processed_twice_across_the_switch(scenario: dict[str, Any]) -> None:
    checks = scenario["checks"]
    assert checks["uploads"] == checks["jobs"] == checks["finished"]
    assert checks["failed"] == 0
    assert checks["classify_tasks_succeeded"] == checks["jobs_that_reached_the_model"]  # the model ran once a job
    assert set(checks["classified_by_version"]) == {scenario["run"]["champion"], scenario["run"]["challenger"]}
    assert checks["uploaded_after_the_switch"] > 0
    assert checks["of_them_served_by_the_old_champion"] == 0


def test_operators_see_the_run_on_the_dashboard_and_in_metrics(scenario: dict[str, Any]) -> None:
    run, html, metrics = scenario["run"], scenario["html"], scenario["metrics"]
    assert run["challenger"] in html
    assert "kept" in html
    assert "cbb -0.333 falls by more than 0.100" in html
    assert "accuracy_below" in html
    assert "mhogo_tasks_total{host=" in metrics
    assert 'task="mhogo.inference.diagnose"' in metrics  # counted by the worker processes, read through the API
    assert f'mhogo_accuracy{{key="agronomist",model_version="{run["champion"]}"}}' in metrics
    assert screenshot_problems(scenario["screenshot"]) == []
    print(f"dashboard screenshot: {scenario['screenshot']}")
