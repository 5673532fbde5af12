"""The operators' dashboard's tables about labels and data: how far agronomists agree (Cohen's kappa, core.agreement),
and every model version next to the dataset version that made it, with its accuracy on the frozen holdout (as its
retraining run judged it) or, for a model trained by hand, on its own test split."""

from __future__ import annotations

import html
from typing import Any

from sqlmodel import Session, col, select

from core.agreement import agreement
from schemas.tables import DatasetVersion, ModelVersion, RetrainRun

e = html.escape
LATEST = 12  # model versions shown, newest first


def table(head: list[str], rows: list[list[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    body = body or f'<tr><td colspan="{len(head)}">{e(empty)}</td></tr>'
    return f"<table><tr>{''.join(f'<th>{e(h)}</th>' for h in head)}</tr>{body}</table>"


def kappa_cell(figure: dict[str, Any]) -> str:
    value = figure.get("kappa")
    return f"{'-' if value is None else f'{value:.2f}'} ({figure.get('items', 0)} items)"


def agreement_table(session: Session) -> str:
    found = agreement(session)
    rows = [["everyone", kappa_cell(found)]]
    rows += [[name, kappa_cell(figure)] for name, figure in found["per_agronomist"].items()]
    rows += [[f"class {label.upper()}", kappa_cell(figure)] for label, figure in found["per_class"].items()]
    note = f"from {found['items']} photos two agronomists labelled independently ({found['agreed']} agreed)"
    return (
        f'<section class="wide"><h2>Agronomists&#39; agreement, Cohen&#39;s kappa ({e(note)})</h2>'
        + table(["who", "kappa"], rows if found["items"] else [], "no photo labelled twice yet")
        + "</section>"
    )


def accuracy_of(row: ModelVersion, judged: dict[str, dict[str, Any]]) -> str:
    holdout = judged.get(row.version, {}).get("holdout", {})
    if holdout.get("accuracy") is not None:
        return f"{holdout['accuracy']:.3f} on the frozen holdout ({holdout.get('photos', '?')} photos)"
    test = (row.metrics.get("test_metrics") or {}).get("accuracy")
    return "-" if test is None else f"{test:.3f} on its own test split"


def models_table(session: Session) -> str:
    versions = session.exec(select(ModelVersion).order_by(col(ModelVersion.created_at).desc()).limit(LATEST)).all()
    runs = session.exec(select(RetrainRun).where(col(RetrainRun.challenger_version).in_([v.version for v in versions])))
    judged = {run.challenger_version or "": run.evaluation.get("challenger", {}) for run in runs.all()}
    judged |= {run.champion_version or "": run.evaluation.get("champion", {})
               for run in session.exec(select(RetrainRun)).all() if run.champion_version}  # fmt: skip
    datasets = {d.id: d for d in session.exec(select(DatasetVersion)).all()}
    rows = []
    for row in versions:
        data = datasets.get(row.dataset_version or "")
        made = f"{row.dataset_version or '-'}" + (f" ({data.photos} photos)" if data else "")
        rows.append([row.version, f"{row.created_at:%Y-%m-%d %H:%M}", row.made_by, made, accuracy_of(row, judged)])
    return (
        '<section class="wide"><h2>Models and the data that made them</h2>'
        + table(["model version", "made", "by", "dataset version", "accuracy"], rows, "no model yet")
        + "</section>"
    )
