"""The dashboard's charts: matplotlib figures made without pyplot (no global state, safe in the threadpool), saved
as SVG and put inline as data URIs, so the page needs nothing else to load. Long periods are thinned to at most
MAX_POINTS per line."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from sqlalchemy import func
from sqlmodel import Session, col, select

from core.config import Settings
from producers.api.palette import OTHER_COLOUR, STATUS_COLOURS
from schemas.tables import MetricPoint

MAX_POINTS = 360
TOTAL = {"color": "black", "linewidth": 2.0}  # the line of all keys together, drawn over the parts

Line = tuple[list[float], list[float]]  # times as matplotlib date numbers, values
Point = tuple[datetime, str, str | None, float]  # at, key, model version, value


# Data -------------------------------------------------------------------------------------------------------------


def thin(times: list[datetime], values: list[float], limit: int = MAX_POINTS) -> Line:
    """At most `limit` points, each the mean of a run of consecutive points, at the run's middle time."""
    if len(times) <= limit:
        return date_numbers(times), values
    size = -(-len(times) // limit)
    runs = [(times[i : i + size], values[i : i + size]) for i in range(0, len(times), size)]
    middles = [run_times[(len(run_times) - 1) // 2] for run_times, _ in runs]
    return date_numbers(middles), [sum(run_values) / len(run_values) for _, run_values in runs]


def points(session: Session, name: str, since: datetime, key: str | None = None) -> list[Point]:
    """Like core.monitoring.series, as plain rows: a day of ticks is tens of thousands of them."""
    statement = select(MetricPoint.at, MetricPoint.key, MetricPoint.model_version, MetricPoint.value).where(
        col(MetricPoint.name) == name, col(MetricPoint.at) >= since
    )
    if key is not None:
        statement = statement.where(col(MetricPoint.key) == key)
    return list(session.exec(statement.order_by(col(MetricPoint.at), col(MetricPoint.id))).all())


def lines_by(rows: Iterable[Point], label: Callable[[str, str | None], str]) -> dict[str, Line]:
    """One line per label of (key, model version)."""
    grouped: dict[str, tuple[list[datetime], list[float]]] = {}
    for at, key, version, value in rows:
        times, values = grouped.setdefault(label(key, version), ([], []))
        times.append(at)
        values.append(value)
    return {name: thin(*line) for name, line in sorted(grouped.items(), key=lambda item: item[0] != "all")}


def by_key(key: str, _: str | None) -> str:
    return key or "all"


def date_number(when: datetime) -> float:
    return float(mdates.date2num(when))  # type: ignore[no-untyped-call]


def date_numbers(times: list[datetime]) -> list[float]:
    """Matplotlib's numbers for dates, converted in one call (one call per point takes half a second a day)."""
    return list(mdates.date2num(times)) if times else []  # type: ignore[no-untyped-call]


def data_start(session: Session, since: datetime, now: datetime) -> datetime:
    """Where the charts begin: `since`, or a little before the first point if the data starts later (a stack up for
    ten minutes draws ten minutes wide, not squeezed into the right edge of six hours)."""
    first = session.exec(select(func.min(MetricPoint.at)).where(col(MetricPoint.at) >= since)).one()
    return since if first is None else max(since, first - (now - first) * 0.05)


def charts(
    session: Session, report: dict[str, Any], config: Settings, since: datetime, now: datetime
) -> dict[str, str]:
    """Each chart as an SVG data URI, by name."""
    champion = (report["models"]["champion"] or {}).get("version")
    latency = [row for q in (50, 95, 99) for row in points(session, "latency_ms", since, key=f"end_to_end:p{q}")]
    accuracy = lines_by(
        points(session, "accuracy", since, key="trusted"),
        lambda _, version: f"{version}\n(champion)" if version == champion else str(version),
    )
    drift = [*points(session, "drift_psi", since, key="max"), *points(session, "drift_psi", since, key="class_mix")]
    window = (data_start(session, since, now), now)
    return {
        "photos_per_minute": line_chart(lines_by(points(session, "photos_per_minute", since), by_key), window,
                                        "photos per minute", styles={"all": TOTAL}),
        "queue_length": line_chart(lines_by(points(session, "queue_length", since), by_key), window, "messages"),
        "latency": line_chart(lines_by(latency, lambda key, _: key.partition(":")[2]), window,
                              "end to end, ms"),
        "rejection_rate": line_chart(lines_by(points(session, "rejection_rate", since), by_key), window,
                                     "share of finished photos", percent=True, styles={"all": TOTAL}),
        "accuracy": line_chart(accuracy, window, "accuracy, trusted labels", percent=True,
                               threshold=(config.TRIGGER_ACCURACY_BELOW, "retrain below")),
        "drift": line_chart(lines_by(drift, by_key), window, "PSI",
                            threshold=(config.TRIGGER_DRIFT_PSI, "retrain above")),
        "model_history": history_chart(report["champion_history"], report["runs"], window),
    }  # fmt: skip


# Drawing ----------------------------------------------------------------------------------------------------------


def svg_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def time_axis(axes: Axes, window: tuple[datetime, datetime]) -> None:
    locator = mdates.AutoDateLocator(tz=window[0].tzinfo, maxticks=8)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    # no offset line below the ticks: the page's header gives the date
    formatter = mdates.ConciseDateFormatter(locator, tz=window[0].tzinfo, show_offset=False)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)
    axes.set_xlim(date_number(window[0]), date_number(window[1]))
    axes.set_axisbelow(True)
    axes.grid(True, color="#e4e4e4", linewidth=0.8)
    axes.spines[["top", "right"]].set_visible(False)


def no_data(axes: Axes) -> None:
    axes.text(0.5, 0.5, "no data yet", transform=axes.transAxes, ha="center", va="center", color="#888", fontsize=13)


def line_chart(
    lines: dict[str, Line],
    window: tuple[datetime, datetime],
    ylabel: str,
    percent: bool = False,
    threshold: tuple[float, str] | None = None,
    styles: dict[str, dict[str, Any]] | None = None,
) -> str:
    figure = Figure(figsize=(6.6, 2.8))
    # Fixed margins (one draw per figure, where a tight or constrained layout draws twice), the right one as wide as
    # the legend's longest line needs (the same for every chart up to 21 characters: a model version).
    longest = max((len(line) for name in [*lines, threshold[1] if threshold else ""] for line in name.split("\n")),
                  default=0)  # fmt: skip
    figure.subplots_adjust(left=0.11, right=min(0.68, 0.92 - 0.0115 * longest), bottom=0.1, top=0.96)
    axes = figure.add_subplot()
    for name, (times, values) in lines.items():
        style: dict[str, Any] = {"label": name, "linewidth": 1.3} | (styles or {}).get(name, {})
        axes.plot(times, values, **style)
    if threshold is not None and lines:
        axes.axhline(threshold[0], color="#c62828", linestyle="--", linewidth=1, label=threshold[1])
    if not lines:
        no_data(axes)
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes.set_ylim(bottom=0)
    axes.set_ylabel(ylabel)
    time_axis(axes, window)
    if lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return svg_uri(figure)


def span(start: datetime, end: datetime, since: datetime) -> tuple[float, float]:
    """Left edge and width in date numbers, cut at the start of the period."""
    left = date_number(max(start, since))
    return left, date_number(end) - left


def history_chart(changes: list[dict[str, Any]], runs: list[dict[str, Any]], window: tuple[datetime, datetime]) -> str:
    """Two rows over the period: who was champion (a span per version, a diamond where it changed), and each
    retraining run from fired to finished (to now while open), coloured by status."""
    since, now = window
    figure = Figure(figsize=(13.2, 2.4))
    figure.subplots_adjust(left=0.07, right=0.87, bottom=0.14, top=0.95)
    axes = figure.add_subplot()
    palette = ["#90caf9", "#a5d6a7", "#ffe082", "#ce93d8", "#80cbc4", "#ffab91"]
    starts = [datetime.fromisoformat(change["changed_at"]) for change in changes]
    for i, (change, start) in enumerate(zip(changes, starts, strict=True)):
        left, width = span(start, starts[i + 1] if i + 1 < len(starts) else now, since)
        axes.broken_barh([(left, width)], (0.7, 0.6), facecolors=palette[i % len(palette)], edgecolor="white")
        axes.text(left + width / 2, 1, change["version"], ha="center", va="center", fontsize=8, clip_on=True)
        if start >= since:
            axes.plot([date_number(start)], [1.38], marker="D", color="black", markersize=6)
    for run in runs:
        finished = datetime.fromisoformat(run["finished_at"]) if run["finished_at"] else now
        if finished < since:
            continue  # the last run, listed below the chart although it finished before the period
        left, width = span(datetime.fromisoformat(run["fired_at"]), finished, since)
        colour = STATUS_COLOURS.get(run["status"], OTHER_COLOUR)
        axes.broken_barh([(left, width)], (-0.3, 0.6), facecolors=colour)
        axes.plot([left], [0], marker="o", color=colour, markeredgecolor="black", markersize=6)
        axes.text(left, -0.42, f"#{run['id']} {run['rule']}", fontsize=8, va="top", clip_on=True)
    for status, colour in STATUS_COLOURS.items():
        axes.plot([], [], marker="s", linestyle="", color=colour, label=status)
    axes.plot([], [], marker="D", linestyle="", color="black", label="champion changed")
    if not changes and not runs:
        no_data(axes)
    axes.set_yticks([0, 1], ["retraining", "champion"])
    axes.set_ylim(-0.9, 1.6)
    time_axis(axes, window)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return svg_uri(figure)
