"""The acceptance scenario of the loop on the real stack (`mhogo scenario retrain --quick` does the same): a
champion trained on part of the sample photos serves; the rest arrive; agronomists' labels (the photos' true
classes) reach two aggregation workers at once; a rule fires; exactly one retraining run trains, judges and promotes
a challenger; photos keep arriving across the switch and each gets exactly one result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from core.config import Settings, settings
from mhogo.browser import screenshot_dashboard, screenshot_problems
from mhogo.scenario import ScenarioConfig, run_scenario
from tests.utils.factories import SAMPLES

pytestmark = pytest.mark.integration


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

    rules = {
        "MHOGO_TRIGGER_ACCURACY_LAST_N": "10",  # the sample's stream holds ~20 cassava photos
        "MHOGO_PROMOTION_MIN_GAIN": "-1",  # two-batch models are near chance: promote, to test the switch
        "MHOGO_PROMOTION_MAX_CLASS_DROP": "1",
    }
    config = ScenarioConfig(SAMPLES, home, quick=True, extra_env=rules, before_stop=look)
    report = run_scenario(config, settings, out=print)
    return report | seen


def test_one_rule_fires_one_run_and_the_challenger_takes_over(scenario: dict[str, Any]) -> None:
    run, checks = scenario["run"], scenario["checks"]
    assert checks["retraining_runs"] == 1
    assert run["rule"] == "accuracy_below"
    assert run["figures"]["labelled"] == 10
    assert run["figures"]["accuracy"] < 0.8
    assert run["status"] == "promoted"
    assert checks["champion"] == run["challenger"] != run["champion"]
    assert run["dataset"]["feedback_added"] > 0
    assert run["dataset"]["feedback_held_out"] > 0
    assert set(run["evaluation"]["sets"]) == {"holdout", "feedback"}
    times = {event: datetime.fromisoformat(t) for event, t in checks["times"].items()}
    order = ["fired", "started", "promoted", "first_result_of_the_new_champion"]
    assert [times[event] for event in order] == sorted(times[event] for event in order)
    assert times["started"] < times["finished"]


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
    assert "promoted" in html
    assert "accuracy_below" in html
    assert "mhogo_tasks_total{host=" in metrics
    assert 'task="mhogo.inference.diagnose"' in metrics  # counted by the worker processes, read through the API
    assert f'mhogo_accuracy{{key="agronomist",model_version="{run["champion"]}"}}' in metrics
    assert screenshot_problems(scenario["screenshot"]) == []
    print(f"dashboard screenshot: {scenario['screenshot']}")
