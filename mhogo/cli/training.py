"""The ML engineers' side of the `mhogo` command: `train`, `predict`, `evaluate`, `export` and `data check`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from core.config import REPO, settings
from core.db import open_session

if TYPE_CHECKING:
    from ml.checkpoint import Checkpoint


def open_model(ref: str | None) -> Checkpoint:
    """A checkpoint file, a registered version, an alias (`champion`, `challenger`), or by default the champion."""
    from core import registry
    from core.blobs import BlobStore
    from schemas.errors import RegistryError

    with open_session(settings.database_url) as session:
        try:
            return registry.resolve(session, BlobStore(settings.blob_dir), ref, settings.model_path)
        except RegistryError as exc:
            raise click.UsageError(str(exc)) from exc


def _backbones(value: str | None) -> tuple[str, ...] | None:
    from ml.model import BACKBONES

    if value is None:
        return None
    names = tuple(value.split("+"))
    unknown = [name for name in names if name not in BACKBONES]
    if unknown or len(set(names)) != len(names):
        raise click.BadParameter(f"{value!r}: give one of {', '.join(BACKBONES)}, or distinct ones joined by +")
    return names


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=False)
@click.option("--data", "data_option", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The photos, as DATA_DIR: a `mhogo dataset export` folder records its dataset version in the "
                   "model (its MANIFEST.csv is checked photo by photo first).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where to write the model.")
@click.option("--cv", "folds", type=int, default=None, help="Cross-validate with this many folds instead.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --cv: also write an HTML report with the confusion matrix drawn, and every figure as JSON "
                   "beside it.")  # fmt: skip
@click.option(
    "--keep-folds",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --cv: save each fold's model (with its leaf gate) in this folder as fold-K.pt.",
)
@click.option("--register", is_flag=True, help="Register the model it writes, as the challenger.")
@click.option("--all-photos", is_flag=True,
              help="Train the model on every photo, with no validation or test split of its own: use with --cv, "
                   "which measures the recipe and whose figures the model then records.")  # fmt: skip
@click.option("--backbone", callback=lambda _ctx, _param, value: _backbones(value), default=None,
              help="Which ImageNet-pretrained EfficientNet-Lite to fine-tune: lite0 (default), lite1, lite2, or "
                   "several joined by + (lite1+lite2) to train each and serve them as one ensemble.")  # fmt: skip
@click.option("--negatives", "negatives_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Photos that are not cassava leaves, for the leaf gate (default: DATA_DIR/negatives "
              "if it exists; without any, the model has no leaf gate).")  # fmt: skip
@click.option("--epochs", type=int, default=None)
@click.option("--soup", type=int, default=None, help="Average the weights of this many runs (consecutive seeds).")
@click.option("--seed", type=int, default=None)
@click.option("--tta", type=click.Choice(["1", "2", "4"]), default=None, help="Test-time views stored in the model.")
@click.option("--dry-run", is_flag=True, help="Two small batches: checks the whole path in seconds.")
def train(
    data_dir: Path | None,
    data_option: Path | None,
    out: Path | None,
    folds: int | None,
    report: Path | None,
    keep_folds: Path | None,
    register: bool,
    all_photos: bool,
    backbone: tuple[str, ...] | None,
    negatives_dir: Path | None,
    epochs: int | None,
    soup: int | None,
    seed: int | None,
    tta: str | None,
    dry_run: bool,
) -> None:
    """Fine-tune the classifier on DATA_DIR (one folder per class, or a folder holding cassava/<class>/ and
    negatives/), and fit its leaf gate when there are photos that are not cassava leaves."""
    from ml.train import TrainConfig, cross_validate, cv_summary
    from ml.train import train as run_training
    from schemas.errors import BadInput

    if (data_dir is None) == (data_option is None):
        raise click.UsageError("give the photos once: DATA_DIR or --data DIR")
    data_dir = data_dir or data_option
    assert data_dir is not None

    config = TrainConfig(dry_run=dry_run, threads=settings.torch_threads)
    config.epochs = epochs or config.epochs
    config.soup = soup or config.soup
    if backbone:
        from ml.model import ModelConfig

        config.model = ModelConfig.for_backbone(backbone[0])
        config.ensemble = backbone if len(backbone) > 1 else ()
    if all_photos:
        config.val_fraction = config.test_fraction = 0.0
    config.seed = config.seed if seed is None else seed
    config.tta_views = int(tta) if tta else config.tta_views
    from ml.train import code_version

    extra: dict[str, object] = {"code_version": code_version()}  # before a long CV: the tree may change meanwhile
    if folds:
        result = cross_validate(data_dir, config, settings.quality_thresholds, folds, negatives_dir, keep_folds)
        if report:
            from ml.report import write_cv_report

            write_cv_report(result, report)
            report.with_suffix(".json").write_text(json.dumps(result, indent=1))  # every figure, for the record
        if out is None:
            click.echo(json.dumps(result))
            return
        extra["cross_validation"] = cv_summary(result)
    if out is None:
        raise click.UsageError("give --out FILE, or --cv K to cross-validate (both: the model records its CV)")
    try:
        trained = run_training(data_dir, out, config, settings.quality_thresholds, extra_meta=extra,
                               negatives_dir=negatives_dir)  # fmt: skip
    except BadInput as exc:
        raise click.UsageError(str(exc)) from exc
    meta = trained.checkpoint.meta
    summary = {"path": str(out), "version": trained.checkpoint.version, "sha256": trained.sha256,
               "dataset_version": meta["dataset_version"],
               "val": meta.get("val_metrics"), "test": meta.get("test_metrics"),
               "seconds": meta["seconds"], **extra}  # fmt: skip
    if register:
        from mhogo.cli.models import register_file

        register_file(out, None, None, challenger=True)
    click.echo(json.dumps(summary))


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "ref", default=None, help="A file, a version or an alias; default: the champion.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def predict(images: tuple[Path, ...], ref: str | None, as_json: bool) -> None:
    """Diagnose photos in-process, through the same preprocess -> filter -> infer code as the workers."""
    import torch

    from ml.diagnose import examine
    from ml.predictor import Predictor

    torch.set_num_threads(settings.torch_threads)
    predictor = Predictor(open_model(ref))
    for path in images:
        finding = examine(path.read_bytes(), predictor, settings.quality_thresholds, settings.MAX_IMAGE_PIXELS)
        if as_json:
            click.echo(json.dumps({"path": str(path), **finding.to_dict()}))
        elif finding.reason is None:
            click.echo(f"{path}: {finding.label} ({finding.confidence:.2f})")
        else:
            click.echo(f"{path}: rejected, {finding.reason.value}: {finding.reason.message}")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "ref", default=None, help="A file, a version or an alias; default: the champion.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the default prints a summary).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=Path("mhogo-evaluation.html"),
              help="HTML report with the confusion matrix and reliability diagram drawn (PNGs beside it).")  # fmt: skip
def evaluate(data_dir: Path, ref: str | None, as_json: bool, report: Path) -> None:
    """Measure a model on DATA_DIR (cassava/<class>/ and optionally negatives/), through the serving path."""
    import torch

    from ml.evaluate import evaluate_dir
    from ml.predictor import Predictor
    from ml.report import write_eval_report

    torch.set_num_threads(settings.torch_threads)
    predictor = Predictor(open_model(ref))
    result, _ = evaluate_dir(predictor, data_dir, settings.quality_thresholds, progress=not as_json)
    write_eval_report(result, report)
    result["report"] = str(report)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"{predictor.version}: accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}, "
        f"ECE {result['expected_calibration_error']:.3f} on {result['photos']} photos; report {report}"
    )


@click.command("export")
@click.argument("ref", default="champion")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx")
@click.option("--int8", is_flag=True, help="Also write a static int8 build, calibrated on real photos.")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Class folders of photos for int8 calibration; default: the samples in the repo.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("export"))
def export_model(ref: str, fmt: str, int8: bool, calibration: Path | None, out: Path) -> None:
    """Write a build of REF (a version, an alias or a file) that a phone app runs offline, with its preprocessing
    written down beside it (OUT/VERSION.onnx and OUT/VERSION.json)."""
    from ml.data import scan
    from ml.export import export_int8, export_onnx
    from ml.imaging import decode, prepare
    from ml.phone_build import phone_input

    checkpoint = open_model(ref)
    fp32 = export_onnx(checkpoint, out / f"{checkpoint.version}.onnx", settings.quality_thresholds)
    click.echo(f"{fp32.path} ({fp32.size_bytes / 1e6:.1f} MB, sha256 {fp32.sha256[:12]})")
    if int8:
        folder = calibration or REPO / "samples"
        photos = scan(folder, checkpoint.classes)
        images = [prepare(decode(s.path.read_bytes(), settings.MAX_IMAGE_PIXELS), checkpoint.preprocess).image
                  for s in photos]  # fmt: skip
        batches = [phone_input(image, checkpoint.preprocess) for image in images]
        quantised = export_int8(checkpoint, fp32.path, out / f"{checkpoint.version}.int8.onnx", batches,
                                settings.quality_thresholds)  # fmt: skip
        click.echo(f"{quantised.path} ({quantised.size_bytes / 1e6:.1f} MB, sha256 {quantised.sha256[:12]})")


@click.group()
def data() -> None:
    """Training data: what to clean before training."""


@data.command("check")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the default prints a summary).")
def data_check(data_dir: Path, as_json: bool) -> None:
    """List duplicates and near-duplicates (perceptual hash), photos the quality gate turns away, and class counts
    of DATA_DIR (class folders, or cassava/<class>/ and negatives/)."""
    from ml.datacheck import check_photos, photos_in
    from ml.imaging import PreprocessConfig
    from schemas.labels import LABELS

    classes = [label.value for label in LABELS]
    try:
        photos = photos_in(data_dir, classes)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from exc
    result = check_photos(photos, classes, settings.quality_thresholds, PreprocessConfig(), progress=not as_json)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{result['photos']} photos: " + ", ".join(f"{k} {v}" for k, v in result["class_counts"].items()))
    for title, key in (("duplicates", "duplicates"), ("near-duplicates", "near_duplicates"),
                       ("near-duplicates with different labels", "label_conflicts")):  # fmt: skip
        click.echo(f"{title}: {len(result[key])} groups")
        for group in result[key]:
            click.echo("  " + "  ".join(group))
    click.echo(f"turned away by the quality gate: {len(result['gate_failures'])}")
    for failure in result["gate_failures"]:
        click.echo(f"  {failure['photo']}: {failure['reason']}")


COMMANDS = (train, predict, evaluate, export_model, data)
