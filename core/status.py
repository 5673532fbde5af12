"""What operators see at a glance, as one JSON-ready report: `mhogo status` prints it, the dashboard's header shows it.

The figures are those of the last aggregation tick (core.monitoring), the queues are read live from Redis when it
answers, and the model side comes from the registry and the retraining runs: what serves, what waits, whether the
loop may retrain and promote on its own, and what it did over the last hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func
from sqlmodel import Session, col, select

from core import monitoring, registry, triggers
from core.config import Settings
from core.namespace import Namespace, deployment_id
from schemas.tables import (
    AliasChange,
    MetricPoint,
    ModelAliasName,
    ModelVersion,
    OperatorSwitch,
    RetrainRun,
    SwitchName,
    utcnow,
)

FEEDBACK_FIGURES = ("labelled", "accuracy", "macro_f1", "ece")
RUNS_LOOKED_AT = 200
STALE_TICKS = 3  # a last tick older than this many intervals means the aggregation is not running


def status_report(
    session: Session, client: redis.Redis | None, config: Settings, hours: float, namespace: Namespace | None = None
) -> dict[str, Any]:
    """The facts of the last `hours`: last tick's figures, live queues, models, switches, champion moves, runs. The
    queues are those of `namespace`, by default the database's deployment's."""
    now = utcnow()
    since = now - timedelta(hours=hours)
    figures = tick_figures(session, config, since, now)
    runs = runs_overlapping(session, since)
    namespace = namespace or Namespace(deployment_id(session))
    queues, redis_state = live_queues(client, namespace, now)
    if queues is None:
        queues = {"source": "last tick", "lengths": figures.pop("queue_length", {})}
    else:
        figures.pop("queue_length", None)
    return {
        "generated_at": now.isoformat(),
        "hours": hours,
        "deployment": namespace.deployment,
        "models": models(session),
        "switches": switches(session, config),
        "redis": redis_state,
        "queues": queues,
        **figures,
        "champion_history": [change_record(change) for change in champion_changes(session, since)],
        "runs": triggers.summaries(runs),
    }


def tick_figures(session: Session, config: Settings, since: datetime, now: datetime) -> dict[str, Any]:
    """The last tick within the period, reshaped: latency per stage, feedback per version and source."""
    last_at = session.exec(select(func.max(col(MetricPoint.at))).where(col(MetricPoint.at) >= since)).one()
    tick: dict[str, Any] = {"at": None, "age_s": None, "stale": True, "interval_s": config.METRICS_INTERVAL_S,
                            "window_s": config.METRICS_WINDOW_S}  # fmt: skip
    if last_at is None:
        return {"tick": tick}
    age = (now - last_at).total_seconds()
    tick |= {"at": last_at.isoformat(), "age_s": round(age, 1), "stale": age > STALE_TICKS * config.METRICS_INTERVAL_S}
    # Several aggregation workers may write a tick moments apart: the newest figure of each key wins.
    points = monitoring.latest(session, last_at - timedelta(seconds=config.METRICS_INTERVAL_S / 2))
    figures = monitoring.summary(points)
    versions: dict[str, dict[str, Any]] = figures.pop("versions", {})
    photos = figures.get("photos_per_minute", {})
    latency: dict[str, dict[str, float]] = {}
    for key, value in figures.get("latency_ms", {}).items():
        stage, _, percentile = key.rpartition(":")
        latency.setdefault(stage, {})[percentile] = value
    return {
        "tick": tick,
        "photos_per_minute": {"all": photos.pop("value", 0.0), **photos},
        "queue_length": figures.get("queue_length", {}),
        "latency_ms": dict(sorted(latency.items(), key=lambda item: (item[0] != "end_to_end", item[0]))),
        "rejection_rate": dict(
            sorted(figures.get("rejection_rate", {}).items(), key=lambda item: (item[0] != "all", -item[1]))
        ),
        "failure_rate": figures.get("failure_rate", {}).get("value"),
        "feedback": {
            version: feedback_of(values)
            for version, values in sorted(versions.items())
            if any(name in values for name in FEEDBACK_FIGURES)
        },
        "drift": drift_of(versions),
    }


def feedback_of(values: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{name: {source: value}} turned into {source: {name: value}}, sources in monitoring's order."""
    out: dict[str, dict[str, float]] = {}
    for source in monitoring.SOURCES:
        row = {name: values[name][source] for name in FEEDBACK_FIGURES if source in values.get(name, {})}
        if row:
            out[source] = row
    return out


def drift_of(versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Drift scores are the champion's; there is at most one version with them per tick."""
    for version, values in versions.items():
        if "drift_psi" in values:
            scores = values["drift_psi"]
            ordered = {key: scores[key] for key in ("max", "class_mix") if key in scores}
            return {"model_version": version, "scores": ordered | dict(sorted(scores.items()))}
    return {}


def live_queues(
    client: redis.Redis | None, namespace: Namespace, now: datetime
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Queue lengths read now, or None with the reason when Redis was not asked or did not answer."""
    if client is None:
        return None, {"ok": None, "error": "not asked"}
    try:
        points = monitoring.queue_figures(client, namespace, now)
    except redis.RedisError as exc:
        return None, {"ok": False, "error": f"Redis did not answer: {exc}"}
    return {"source": "redis", "lengths": {row.key: int(row.value) for row in points}}, {"ok": True, "error": None}


def models(session: Session) -> dict[str, Any]:
    aliases = registry.aliases(session)
    return {alias.value: version_record(session, aliases.get(alias.value)) for alias in ModelAliasName}


def version_record(session: Session, version: str | None) -> dict[str, Any] | None:
    row = session.get(ModelVersion, version) if version else None
    if row is None:
        return None if version is None else {"version": version}
    return {"version": row.version, "made_by": row.made_by, "created_at": row.created_at.isoformat(),
            "parent_version": row.parent_version, "dataset_version": row.dataset_version}  # fmt: skip


def switches(session: Session, config: Settings) -> dict[str, Any]:
    """Each switch's state, who flipped it last and why. Retraining also needs MHOGO_AUTO_RETRAIN."""
    out: dict[str, Any] = {}
    for name, setting in ((SwitchName.AUTO_PROMOTION, True), (SwitchName.AUTO_RETRAIN, config.AUTO_RETRAIN)):
        switch = triggers.switch_on(session, name)
        row = session.get(OperatorSwitch, name)
        out[name.value] = {"on": switch and setting, "switch": switch, "setting": setting,
                     "changed_by": row.changed_by if row else None, "reason": row.reason if row else None,
                     "changed_at": row.changed_at.isoformat() if row else None}  # fmt: skip
    return out


def champion_changes(session: Session, since: datetime) -> list[AliasChange]:
    """The champion moves of the period, and the one before it: who served when the period began."""
    changes = registry.history(session, ModelAliasName.CHAMPION)
    before = [change for change in changes if change.changed_at < since][-1:]
    return before + [change for change in changes if change.changed_at >= since]


def change_record(change: AliasChange) -> dict[str, Any]:
    return {"version": change.version, "previous_version": change.previous_version, "changed_by": change.changed_by,
            "reason": change.reason, "changed_at": change.changed_at.isoformat()}  # fmt: skip


def runs_overlapping(session: Session, since: datetime) -> Sequence[RetrainRun]:
    """Runs open or finished within the period, oldest first; the newest run if none, so a quiet week still shows
    what the loop did last."""
    runs = triggers.runs(session, RUNS_LOOKED_AT)
    recent = [run for run in runs if run.finished_at is None or run.finished_at >= since]
    return list(reversed(recent or runs[:1]))


# Terminal view ----------------------------------------------------------------------------------------------------


def columns(rows: Sequence[Sequence[str]], indent: int = 2) -> list[str]:
    """Rows of cells as lines with aligned columns; cells that look like numbers are aligned right."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows), default=0))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if is_number(cell) else cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return lines


def is_number(cell: str) -> bool:
    return cell.replace(".", "", 1).replace("%", "").replace("-", "", 1).strip().isdigit()


def when(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M") if iso else "-"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def compact(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items() if not isinstance(value, dict | list))


def render_text(report: dict[str, Any]) -> str:
    """The report as a compact terminal view: one section per concern, columns aligned."""
    lines = [f"mhogo status of deployment {report['deployment']} at {when(report['generated_at'])} UTC (last "
             f"{report['hours']:g} h)", ""]  # fmt: skip
    for section in (models_text, figures_text, feedback_text, history_text, runs_text):
        lines += [*section(report), ""]
    return "\n".join(lines).rstrip() + "\n"


def models_text(report: dict[str, Any]) -> list[str]:
    rows = []
    for alias, row in report["models"].items():
        detail = f"made by {row.get('made_by', '?')}, {when(row.get('created_at'))}" if row else ""
        rows.append([alias, row["version"] if row else "(none)", detail])
    for name, switch in report["switches"].items():
        state = "on" if switch["on"] else "OFF"
        why = [f"by {switch['changed_by']} at {when(switch['changed_at'])}"] if switch["changed_by"] else []
        why += [switch["reason"]] if switch["reason"] else []
        why += [] if switch["setting"] else ["MHOGO_AUTO_RETRAIN is false"]
        rows.append([name.replace("_", " "), state, "; ".join(why)])
    return ["Models", *columns(rows)]


def figures_text(report: dict[str, Any]) -> list[str]:
    tick = report["tick"]
    if tick["at"] is None:
        head = [f"Last tick: none in the last {report['hours']:g} h (is an events worker running?)"]
    else:
        stale = "  STALE: is an events worker running?" if tick["stale"] else ""
        head = [f"Last tick: {when(tick['at'])} ({tick['age_s']:.0f} s ago, over {tick['window_s'] / 60:g} min){stale}"]
    queues = report["queues"]
    rows = [
        ["photos/min", pairs(report.get("photos_per_minute", {}), number)],
        ["queues", pairs(queues["lengths"], lambda n: f"{n:g}") + ("  (live)" if queues["source"] == "redis" else
                                                                   "  (last tick)")],
        ["failures", percent(report.get("failure_rate"))],
        ["rejections", pairs(report.get("rejection_rate", {}), percent)],
    ]  # fmt: skip
    if report["redis"]["ok"] is False:
        rows.insert(2, ["redis", report["redis"]["error"]])
    drift = report.get("drift") or {}
    if drift:
        rows.append(["drift psi", pairs(drift["scores"], lambda v: number(v, 3)) + f"  ({drift['model_version']})"])
    latency = [["latency ms", "p50", "p95", "p99"]]
    latency += [[stage, *(number(row.get(p), 0) for p in ("p50", "p95", "p99"))]
                for stage, row in report.get("latency_ms", {}).items()]  # fmt: skip
    return [*head, *(f"  {label:<11} {text}" for label, text in rows), *(columns(latency) if len(latency) > 1 else [])]


def pairs(values: dict[str, Any], show: Any) -> str:
    return "  ".join(f"{key or 'all'} {show(value)}" for key, value in values.items())


def feedback_text(report: dict[str, Any]) -> list[str]:
    rows = [["version", "source", "labelled", "accuracy", "macro-F1", "ECE"]]
    for version, sources in report.get("feedback", {}).items():
        for source, row in sources.items():
            rows.append([version, source, number(row.get("labelled"), 0), number(row.get("accuracy"), 3),
                         number(row.get("macro_f1"), 3), number(row.get("ece"), 3)])  # fmt: skip
    return ["Feedback", *(columns(rows) if len(rows) > 1 else ["  no labelled photos in the last tick"])]


def history_text(report: dict[str, Any]) -> list[str]:
    rows = [["when", "champion", "was", "by", "why"]]
    rows += [[when(c["changed_at"]), c["version"], c["previous_version"] or "-", c["changed_by"], c["reason"] or ""]
             for c in report["champion_history"]]  # fmt: skip
    return ["Champion history", *(columns(rows) if len(rows) > 1 else ["  no champion yet"])]


def runs_text(report: dict[str, Any]) -> list[str]:
    rows = [["run", "fired", "finished", "status", "rule", "figures", "challenger", "decision"]]
    rows += [[str(run["id"]), when(run["fired_at"]), when(run["finished_at"]), run["status"], run["rule"],
              compact(run["figures"]), run["challenger"] or "-", run["decision"] or ""]
             for run in report["runs"]]  # fmt: skip
    return ["Retraining runs", *(columns(rows) if len(rows) > 1 else ["  none yet"])]
