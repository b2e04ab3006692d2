"""The report's plots, one plotly figure per question, built from a run's measured points."""

from __future__ import annotations

from collections.abc import Callable

import plotly.graph_objects as go

from serveoff.loadtest.histograms import decode
from serveoff.loadtest.results import Estimate, PointResult
from serveoff.report.format import finite
from serveoff.report.runs import Run, target_title

LATENCIES = ("p50", "p99")
DASH = {"p50": "solid", "p99": "dash"}


def _layout(
    fig: go.Figure, title: str, x: str, y: str, log_x: bool = False, log_y: bool = False
) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        template="plotly_white",
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"font": {"size": 11}},
    )
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _series(
    run: Run, model: str, keep: Callable[[PointResult], bool]
) -> dict[str, list[PointResult]]:
    """The model's points that ``keep`` accepts, by target, in order of offered load."""
    by_target: dict[str, list[PointResult]] = {}
    for point in run.points:
        if point.model == model and keep(point):
            by_target.setdefault(point.target, []).append(point)
    return {t: sorted(ps, key=lambda p: p.offered) for t, ps in by_target.items()}


def _scaled(value: float | None, scale: float = 1.0) -> float | None:
    """A figure to plot: a missing or non-finite one leaves a gap (plotly skips None)."""
    return value * scale if finite(value) else None


def _error_bars(values: list[Estimate], scale: float = 1.0) -> dict:
    def bar(top: float | None, bottom: float | None) -> float:
        return (top - bottom) * scale if finite(top) and finite(bottom) else 0

    return {
        "type": "data",
        "symmetric": False,
        "array": [bar(v.high, v.value) for v in values],
        "arrayminus": [bar(v.value, v.low) for v in values],
    }


def throughput_vs_concurrency(run: Run, model: str) -> go.Figure | None:
    """Closed loop: successful requests/s against concurrent users, with 95% intervals."""
    series = _series(run, model, lambda p: p.loop == "closed")
    if not series:
        return None
    fig = go.Figure()
    for points in series.values():
        values = [p.summary.throughput_rps for p in points]
        fig.add_trace(
            go.Scatter(
                x=[p.offered for p in points],
                y=[_scaled(v.value) for v in values],
                error_y=_error_bars(values),
                mode="lines+markers",
                name=target_title(points[0]),
            )
        )
    return _layout(fig, f"{model}: throughput vs concurrency", "concurrent users", "requests/s", log_x=True)


def latency_vs_load(run: Run, model: str) -> go.Figure | None:
    """p50 (solid) and p99 (dashed) latency against offered load, with 95% intervals."""
    series = _series(run, model, lambda p: True)
    if not series:
        return None
    loops = {p.loop for points in series.values() for p in points}
    x_title = "concurrent users" if loops == {"closed"} else "offered load (users, or requests/s when open)"
    fig = go.Figure()
    for target, points in series.items():
        for name in LATENCIES:
            values = [p.summary.latency(name) for p in points]
            fig.add_trace(
                go.Scatter(
                    x=[p.offered for p in points],
                    y=[_scaled(v.value, 1 / 1000) for v in values],
                    error_y=_error_bars(values, 1 / 1000),
                    mode="lines+markers",
                    line={"dash": DASH[name]},
                    legendgroup=target,
                    name=f"{target_title(points[0])} {name}",
                )
            )
    return _layout(fig, f"{model}: latency vs offered load", x_title, "latency (ms)", log_x=True, log_y=True)


def latency_cdf(run: Run, model: str) -> go.Figure | None:
    """The full latency distribution of each target at the heaviest load every target reached."""
    series = _series(run, model, lambda p: p.phase == "sweep")
    if not series:
        return None
    common = set.intersection(*({p.label for p in points} for points in series.values()))
    heaviest = max(
        (p for points in series.values() for p in points if p.label in common),
        key=lambda p: p.offered,
        default=None,
    )
    if heaviest is None:
        return None
    fig = go.Figure()
    for points in series.values():
        point = next(p for p in points if p.label == heaviest.label)
        histogram = decode(point.histogram or "")
        total = histogram.get_total_count()
        if not total:
            continue
        xs, ys, seen = [], [], 0
        for item in histogram.get_recorded_iterator():
            seen += item.count_at_value_iterated_to
            xs.append(item.value_iterated_to / 1000)
            ys.append(seen / total)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv"}, name=target_title(point)))
    title = f"{model}: latency CDF at {heaviest.label}"
    return _layout(fig, title, "latency (ms)", "share of requests answered within", log_x=True)


def serving_tax(run: Run, model: str) -> go.Figure | None:
    """What each server adds to its framework's in-process latency at the same load (p50 and p99)."""
    taxes = [t for t in run.doc.get("serving_tax", []) if t["model"] == model]
    points = {(p.target, p.label): p for p in run.points if p.model == model}
    if not taxes:
        return None
    fig = go.Figure()
    for target in dict.fromkeys(t["target"] for t in taxes):
        rows = [t for t in taxes if t["target"] == target]
        point = points.get((target, rows[0]["label"]))
        title = target_title(point) if point else target
        for name in LATENCIES:
            fig.add_trace(
                go.Bar(
                    x=[t["label"] for t in rows],
                    y=[_scaled(t["latency_us"][name], 1 / 1000) for t in rows],
                    name=f"{title} {name}",
                )
            )
    fig.update_layout(barmode="group")
    return _layout(
        fig, f"{model}: serving tax (server minus in-process latency)", "load", "added latency (ms)"
    )


def _bars(
    run: Run, model: str, title: str, y_title: str, value: Callable[[PointResult], Estimate | None]
) -> go.Figure | None:
    fig = go.Figure()
    for points in _series(run, model, lambda p: value(p) is not None).values():
        values = [value(p) for p in points]
        fig.add_trace(
            go.Bar(
                x=[p.label for p in points],
                y=[_scaled(v.value) for v in values],
                error_y=_error_bars(values),
                name=target_title(points[0]),
            )
        )
    if not fig.data:
        return None
    fig.update_layout(barmode="group")
    return _layout(fig, f"{model}: {title}", "load", y_title)


def cpu_cost(run: Run, model: str) -> go.Figure | None:
    """Server CPU-seconds per 1,000 inferences (in-process baselines have none: they share the generator)."""
    return _bars(
        run, model, "CPU cost", "server CPU-seconds per 1,000 inferences",
        lambda p: p.summary.cpu_s_per_1000,
    )  # fmt: skip


def memory(run: Run, model: str) -> go.Figure | None:
    """Peak resident memory of each server's processes during each point."""

    def peak(point: PointResult) -> Estimate | None:
        return None if point.peak_rss_mib is None else Estimate(point.peak_rss_mib)

    return _bars(run, model, "peak memory", "peak RSS of the server's processes (MiB)", peak)


PLOTS: dict[str, Callable[[Run, str], go.Figure | None]] = {
    "throughput": throughput_vs_concurrency,
    "latency": latency_vs_load,
    "cdf": latency_cdf,
    "tax": serving_tax,
    "cpu": cpu_cost,
    "memory": memory,
}
