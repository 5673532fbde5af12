"""`mhogo scenario retrain`: the feedback -> trigger -> retraining -> promotion loop, run on a stack of its own."""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import click

from core.config import REPO, Settings, settings
from schemas.errors import BadInput

SHARED_DATA = REPO.parent / "shared" / "data"


@click.group()
def scenario() -> None:
    """Scenarios an operator can run end to end on the real stack."""


@scenario.command("retrain")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=SHARED_DATA,
              show_default=True, help="Photos laid out like ../shared/data: cassava/<class>/, negatives/.")  # fmt: skip
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the scenario keeps its stack's state; default MHOGO_HOME/scenarios/<time>.")  # fmt: skip
@click.option("--quick", is_flag=True, help="Two batches a model: checks the loop in a few minutes, not the models.")
@click.option("--screenshot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Before stopping, save the dashboard as headless Chromium shows it (dev extras).")  # fmt: skip
def scenario_retrain(data: Path, home: Path | None, quick: bool, screenshot: Path | None) -> None:
    """A champion trained on 40 % of the photos serves; the stream part (40 %) arrives; agronomists label it with
    the true classes; a rule fires; exactly one retraining run trains a challenger on the base part plus trusted
    feedback, judges it against the champion on the frozen holdout (20 %) and held-out feedback, and promotes it or
    keeps it out with the reason. Prints the timeline; writes every figure to HOME/scenario.json."""
    from mhogo.scenario import ScenarioConfig, run_scenario

    home = home or settings.HOME / "scenarios" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")

    def save_screenshot(live: Settings, password: str) -> None:
        from mhogo.browser import screenshot_dashboard

        assert screenshot is not None
        path = screenshot_dashboard(f"{live.public_url}/ops", live.FLOWER_USER, password, screenshot.resolve())
        click.echo(f"dashboard screenshot: {path}")

    config = ScenarioConfig(data.resolve(), home.resolve(), quick=quick,
                            before_stop=save_screenshot if screenshot else None)  # fmt: skip

    def stop(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through run_scenario, which stops its stack

    signal.signal(signal.SIGTERM, stop)
    try:
        report = run_scenario(config, settings, out=lambda line: click.echo(line))
    except BadInput as exc:  # a folder too small to run the loop on: said at once, not after minutes of training
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps({"run": {k: v for k, v in report["run"].items() if k in ("id", "rule", "status", "decision",
                                                                                   "champion", "challenger")},
                           "checks": report["checks"], "report": str(home / "scenario.json")}, indent=2))  # fmt: skip
    run, checks = report["run"], report["checks"]
    ok = checks["retraining_runs"] == 1 and checks["failed"] == 0 and checks["uploads"] == checks["finished"]
    sys.exit(0 if ok and run["status"] in ("promoted", "kept") else 1)


@scenario.command("review")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), default=SHARED_DATA,
              show_default=True, help="Photos laid out like ../shared/data: cassava/<class>/, negatives/.")  # fmt: skip
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where its stack keeps its state; default MHOGO_HOME/scenarios/review-<time>.")  # fmt: skip
@click.option("--quick", is_flag=True, help="Two batches a model: checks the path in a few minutes, not the models.")
@click.option("--agronomists", type=click.IntRange(2, 20), default=3, show_default=True)
@click.option("--label-seconds", type=click.FloatRange(1, 600), default=20.0, show_default=True,
              help="An agronomist's time per label, simulated.")  # fmt: skip
@click.option("--no-retrain", is_flag=True, help="Stop after the queue is worked: no snapshot, no retraining run.")
def scenario_review(data: Path, home: Path | None, quick: bool, agronomists: int, label_seconds: float,
                    no_retrain: bool) -> None:  # fmt: skip
    """Farmers contest some diagnoses; agronomists work the review queue through its API; the labels that matter
    (the model wrong, contested or unsure) per agronomist-hour are compared with labelling in upload order; a
    snapshot is taken and a retraining run learns from it. Prints the figures; writes HOME/review-scenario.json and
    the curves, drawn, to HOME/review-scenario.png."""
    from mhogo.review_scenario import ReviewScenarioConfig, run_review_scenario

    home = home or settings.HOME / "scenarios" / datetime.now(UTC).strftime("review-%Y%m%d-%H%M%S")
    config = ReviewScenarioConfig(data.resolve(), home.resolve(), quick=quick, agronomists=agronomists,
                                  label_s=label_seconds, retrain=not no_retrain)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda _signum, _frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    report = run_review_scenario(config, settings, out=lambda line: click.echo(line))
    figures = {k: v for k, v in report["figures"].items() if k != "curves"}
    click.echo(json.dumps({"figures": figures, "dataset": report.get("dataset"),
                           "report": str(home / "review-scenario.json"),
                           "chart": str(home / "review-scenario.png")}, indent=2))  # fmt: skip
    run = (report.get("dataset") or {}).get("run")
    sys.exit(0 if run is None or run["dataset_version"] == report["dataset"]["snapshot"] else 1)


COMMANDS = (scenario,)
