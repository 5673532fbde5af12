"""The ML commands end to end in-process: cross-validation with its report, evaluate, the registry, export."""

import json
from pathlib import Path

from click.testing import CliRunner

from mhogo.cli import main
from ml.checkpoint import load_checkpoint
from ml.ensemble import Ensemble
from tests.utils.factories import SAMPLES
from tests.utils.models import tiny_model


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cross_validation_with_a_model_and_a_drawn_report(tmp_path: Path) -> None:
    out, report = tmp_path / "m.pt", tmp_path / "cv.html"
    folds = tmp_path / "folds"
    args = [
        "--all-photos",
        "--soup",
        "1",
        "--backbone",
        "lite0+lite1",
        "--report",
        str(report),
        "--keep-folds",
        str(folds),
    ]  # an ensemble recipe: its members train in turn; single networks train in every other test
    summary = json.loads(run("train", str(SAMPLES), "--cv", "2", "--dry-run", "--out", str(out), *args)
                         .strip().splitlines()[-1])  # fmt: skip
    assert summary["cross_validation"]["folds"] == 2
    assert len(summary["cross_validation"]["per_fold"]) == 2
    written = load_checkpoint(out)
    meta = written.meta
    assert meta["cross_validation"] == summary["cross_validation"]
    assert meta["split"]["train"] == 50
    assert meta["split"]["val"] == meta["split"]["test"] == 0
    assert summary["test"] is None
    assert "test_metrics" not in meta
    assert meta["params"]["soup"] == 1
    assert isinstance(written.model, Ensemble)
    assert [net.config.backbone for net in written.model.nets()] == ["lite0", "lite1"]
    assert written.version.startswith("lite0+lite1-")
    assert list(meta["params"]["ensemble"]) == ["lite0", "lite1"]
    assert {row["member"] for row in meta["history"]} == {"lite0", "lite1"}
    assert written.leaf_gate is not None  # samples/negatives was found beside the class folders
    assert meta["split"]["negatives"] == [10, 0, 0]
    assert 0 <= summary["cross_validation"]["mean_negative_rejection_rate"] <= 1
    assert 0 <= summary["cross_validation"]["mean_false_rejection_rate"] <= 1
    assert (tmp_path / "cv-confusion.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "cv-leaf-gate.png").read_bytes().startswith(b"\x89PNG")  # held-out scores drawn
    assert "2-fold cross-validation" in report.read_text()
    kept = [load_checkpoint(folds / f"fold-{k}.pt") for k in range(2)]  # each fold's model, with its gate
    assert [(c.version, c.meta["fold"]) for c in kept] == [("fold-0", 0), ("fold-1", 1)]
    assert all(c.tta_views == written.tta_views for c in kept)
    assert all(c.leaf_gate is not None and isinstance(c.model, Ensemble) for c in kept)


def test_evaluate_prints_one_json_object(tmp_path: Path) -> None:
    report = tmp_path / "eval.html"
    result = json.loads(run("evaluate", str(SAMPLES), "--json", "--report", str(report)))
    assert result["photos"] == 50
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "expected_calibration_error",
            "negative_rejection_rate", "false_rejection_rate", "slices"} <= set(result)  # fmt: skip
    assert result["report"] == str(report)
    assert report.is_file()


def test_models_register_promote_rollback_and_show(tmp_path: Path) -> None:
    run("models", "list")  # seeds the champion on this fresh home
    version = run("models", "register", str(tiny_model(tmp_path)), "--challenger", "--made-by", "tester").strip()
    listing = run("models", "list")
    assert f"{version}\tchallenger" in listing
    champion = next(line.split("\t")[0] for line in listing.splitlines() if "\tchampion" in line)
    assert run("models", "promote", version).strip() == f"champion: {version} (was {champion})"
    shown = json.loads(run("models", "show", version))
    assert (shown["made_by"], shown["version"]) == ("tester", version)
    assert run("models", "rollback").strip() == f"champion: {champion} (was {version})"
    mistake = CliRunner().invoke(main, ["models", "promote", "no-such-version"])
    assert mistake.exit_code == 1
    assert "no model version" in mistake.output


def test_export_writes_the_phone_build_and_its_description(tmp_path: Path) -> None:
    out = run("export", "champion", "--out", str(tmp_path))
    [onnx] = list(tmp_path.glob("*.onnx"))
    assert onnx.name in out
    spec = json.loads(onnx.with_suffix(".json").read_text())
    assert spec["input"]["name"] == "pixels"
    assert len(spec["steps"]) >= 5


def test_data_check_lists_duplicates_conflicts_gate_failures_and_counts(tmp_path: Path) -> None:
    from PIL import Image

    from ml.degrade import darkened

    for name in ("cbb", "cbsd", "cgm", "cmd", "healthy"):
        (tmp_path / name).mkdir()
    photos = sorted(SAMPLES.glob("cassava/cmd/*.jpg"))
    for path in photos[:3]:
        (tmp_path / "cmd" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "cmd" / "copy.jpg").write_bytes(photos[0].read_bytes())  # the same file twice
    with Image.open(photos[1]) as image:  # the same picture, smaller, filed under another class
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(tmp_path / "healthy" / "smaller.jpg")
    with Image.open(sorted(SAMPLES.glob("cassava/cbb/*.jpg"))[0]) as image:
        darkened(image).save(tmp_path / "cbb" / "dusk.jpg")
    report = json.loads(run("data", "check", str(tmp_path), "--json"))
    assert report["photos"] == 6
    assert report["class_counts"] == {"cbb": 1, "cmd": 4, "healthy": 1}
    assert report["duplicates"] == [[f"cmd/{photos[0].name}", "cmd/copy.jpg"]]
    conflict = [f"cmd/{photos[1].name}", "healthy/smaller.jpg"]
    assert sorted(map(sorted, report["near_duplicates"])) == sorted([sorted(report["duplicates"][0]), conflict])
    assert report["label_conflicts"] == [conflict]
    assert report["gate_failures"] == [
        {"photo": "cbb/dusk.jpg", "reason": "too_dark", "detail": report["gate_failures"][0]["detail"]}
    ]
    assert "too dark" in report["gate_failures"][0]["detail"]
    summary = run("data", "check", str(tmp_path))
    assert "near-duplicates with different labels: 1 groups" in summary
