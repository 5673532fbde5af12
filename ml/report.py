"""Reports people would rather look at than read: the confusion matrix and the reliability diagram, drawn with
matplotlib into PNG files and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: draw to files
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def confusion_png(confusion: dict[str, Any], title: str) -> bytes:
    counts = confusion["counts"]
    rows, columns = confusion["rows"], confusion["columns"]
    figure, axes = plt.subplots(figsize=(1.1 * len(columns) + 1.5, 0.9 * len(rows) + 1.2))
    totals = [max(sum(row), 1) for row in counts]
    shares = [[value / total for value in row] for row, total in zip(counts, totals, strict=True)]
    axes.imshow(shares, cmap="Greens", vmin=0, vmax=1)
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            colour = "white" if shares[i][j] > 0.6 else "black"
            axes.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=11)
    axes.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return _png(figure)


def reliability_png(bins: list[dict[str, float]], ece: float, title: str) -> bytes:
    figure, axes = plt.subplots(figsize=(4.8, 4.4))
    used = [b for b in bins if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    axes.bar(centres, [b["accuracy"] if b["count"] else 0 for b in bins], width=0.095, color="#4c9a2a",
             edgecolor="black", label="accuracy in bin")  # fmt: skip
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axes.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], "o", color="black", markersize=4)
    for b in used:
        axes.annotate(str(b["count"]), ((b["low"] + b["high"]) / 2, b["accuracy"]), textcoords="offset points",
                      xytext=(0, 4), ha="center", fontsize=8)  # fmt: skip
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("confidence")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{title} (ECE {ece:.3f})")
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def leaf_scores_png(cassava: list[float], negatives: list[float], thresholds: list[float], title: str) -> bytes:
    """Histograms of the leaf gate's scores on held-out cassava photos and on the other photos, with the thresholds."""
    figure, axes = plt.subplots(figsize=(6.0, 3.6))
    bins = [i / 25 for i in range(26)]
    axes.hist(negatives, bins=bins, color="#b5523b", alpha=0.75, label=f"not cassava ({len(negatives)})")
    axes.hist(cassava, bins=bins, color="#4c9a2a", alpha=0.75, label=f"cassava ({len(cassava)})")
    for i, threshold in enumerate(thresholds):
        axes.axvline(threshold, color="black", linestyle=":", linewidth=1, label="fold thresholds" if i == 0 else None)
    axes.set_yscale("log")
    axes.set_xlabel("leaf gate: probability of a cassava leaf")
    axes.set_ylabel("photos")
    axes.set_title(title)
    axes.legend(loc="upper center", fontsize=8)
    return _png(figure)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class(metrics: dict[str, Any]) -> str:
    rows = [[name, m["precision"], m["recall"], m["f1"], m["support"]] for name, m in metrics["per_class"].items()]
    return _table(["class", "precision", "recall", "F1", "photos"], rows)


STYLE = """<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}th{background:#eef5ea}img{margin:1em 1em 0 0}</style>"""


def write_pages(path: Path, title: str, body: str, images: dict[str, bytes]) -> None:
    """The HTML page (images embedded) and each image as its own PNG next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, png in images.items():
        path.with_name(f"{path.stem}-{name}.png").write_bytes(png)
    pictures = "".join(_img(png, name) for name, png in images.items())
    page = f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>{STYLE}<h1>{html.escape(title)}</h1>"
    path.write_text(page + body + f"<div>{pictures}</div>")


def write_eval_report(report: dict[str, Any], path: Path) -> None:
    title = f"mhogo evaluation of {report['model_version']}"
    summary: list[list[object]] = [
        ["accuracy (rejected = wrong)", report["accuracy"]],
        ["macro-F1", report["macro_f1"]],
        ["expected calibration error", report["expected_calibration_error"]],
        ["cassava photos", report["photos"]],
        ["false rejection rate", report["false_rejection_rate"]],
    ]
    if "negative_rejection_rate" in report:
        summary.append(["negative rejection rate", report["negative_rejection_rate"]])
    slices = [[name, s["photos"], s["accuracy"]] for name, s in report["slices"].items()]
    body = _table(["figure", "value"], summary) + _per_class(report) + _table(["slice", "photos", "accuracy"], slices)
    images = {
        "confusion": confusion_png(report["confusion_matrix"], "confusion matrix"),
        "reliability": reliability_png(report["reliability"], report["expected_calibration_error"], "reliability"),
    }
    write_pages(path, title, body, images)


def write_cv_report(report: dict[str, Any], path: Path) -> None:
    views = report["params"]["tta_views"]
    cv = report[f"tta_{views}"]
    title = f"mhogo {report['folds']}-fold cross-validation ({report['photos']} photos, {views} test-time views)"
    rates = ["false_rejection_rate", "negative_rejection_rate"]
    gated = all(rate in cv["per_fold"][0] for rate in rates)
    folds = [[i + 1, f["photos"], f["accuracy"], f["macro_f1"], *([f[r] for r in rates] if gated else [])]
             for i, f in enumerate(cv["per_fold"])]  # fmt: skip
    means = _table(["test-time views", "mean accuracy", "mean macro-F1"],
                   [[k.removeprefix("tta_"), v["mean_accuracy"], v["mean_macro_f1"]]
                    for k, v in report.items() if k.startswith("tta_")])  # fmt: skip
    fold_header = ["fold", "photos", "accuracy", "macro-F1"]
    fold_header += ["cassava rejected", "negatives rejected"] if gated else []
    body = means + _table(fold_header, folds) + _per_class(cv["pooled"])
    pooled = cv["pooled"]
    images = {
        "confusion": confusion_png(pooled["confusion_matrix"], "pooled over the folds"),
        "reliability": reliability_png(pooled["reliability"], pooled["expected_calibration_error"], "reliability"),
    }
    gate = report.get("leaf_gate")
    if gate:
        body += _table(["leaf gate inputs", "AUROC", "cassava rejected", "negatives rejected"],
                       [[name, v["auroc"], v["false_rejection_rate"], v["negative_rejection_rate"]]
                        for name, v in gate["mean_by_inputs"].items()])  # fmt: skip
        scores = [f["held_out_scores"] for f in gate["per_fold"] if "held_out_scores" in f]
        if scores:
            images["leaf-gate"] = leaf_scores_png(
                [x for s in scores for x in s["cassava"]], [x for s in scores for x in s["negatives"]],
                [f["threshold"] for f in gate["per_fold"]], "leaf gate on held-out photos, all folds",
            )  # fmt: skip
    write_pages(path, title, body, images)
