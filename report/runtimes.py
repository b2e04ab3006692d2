"""The report's runtimes table: every in-process runtime of a model side by side, with its start-up cost.

One row per (model, runtime): capacity (the best throughput of its usable points), p50 and p99 at its
lightest load, CPU cost, and what it cost before serving: load time, first call and compile time (from the
results' ``runtimes[]``; a ``serveoff.results/1`` file has none, and its rows say so).
"""

from __future__ import annotations

from dataclasses import dataclass

from serveoff.loadtest.results import PointResult
from serveoff.report.format import finite, ms, significant, with_interval
from serveoff.report.runs import Run, target_title
from serveoff.report.verdicts import left_out

NOT_RECORDED = "not recorded"
SHARED = "shared with the load generator"  # in-process runtimes run in the generator's process


@dataclass(frozen=True)
class RuntimeRow:
    """One runtime of one model, as the report shows it."""

    model: str
    target: str
    title: str
    throughput: str
    p50: str
    p99: str
    cpu: str
    load: str
    first_call: str
    compile: str


def runtime_rows(run: Run, error_limit: float) -> list[RuntimeRow]:
    """A row per (model, in-process target) the run measured, in the plan's order."""
    startups = {(s.get("model"), s.get("target")): s for s in run.doc.get("runtimes") or []}
    rows = []
    for model in run.models:
        for target in run.targets:
            points = [p for p in run.points if p.model == model and p.target == target]
            if points and points[0].baseline:
                rows.append(_row(model, target, points, startups.get((model, target)), error_limit))
    return rows


def _row(
    model: str, target: str, points: list[PointResult], startup: dict | None, error_limit: float
) -> RuntimeRow:
    usable = [p for p in points if left_out(p, error_limit) is None] or points
    best = max(usable, key=lambda p: p.summary.throughput_rps.value or 0.0)
    light = min(usable, key=lambda p: p.offered or 0.0)
    latency = light.summary
    cpu = best.summary.cpu_s_per_1000
    start = startup or {}
    return RuntimeRow(
        model=model,
        target=target,
        title=target_title(points[0]),
        throughput=f"{with_interval(best.summary.throughput_rps)} ({best.label})",
        p50=f"{with_interval(latency.latency('p50'), 'ms')} ({light.label})",
        p99=with_interval(latency.latency("p99"), "ms"),
        cpu=with_interval(cpu) if cpu is not None and finite(cpu.value) else SHARED,
        load=_seconds(start.get("load_s")) if startup else NOT_RECORDED,
        first_call=ms(start["first_call_ms"] * 1000) if finite(start.get("first_call_ms")) else NOT_RECORDED,
        compile=_seconds(start.get("compile_s")) if startup and start.get("compile_s") is not None else "-",
    )


def _seconds(value: float | None) -> str:
    return f"{significant(value)} s" if finite(value) else NOT_RECORDED


def markdown(rows: list[RuntimeRow]) -> list[str]:
    """The table in Markdown, for report.md (nothing when the run measured no in-process runtime)."""
    if not rows:
        return []
    out = ["### In-process runtimes", "",
           "| model | runtime | requests/s | p50 | p99 | CPU-s/1000 | load | first call | compile |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        cells = [r.model, f"{r.title} (`{r.target}`)", r.throughput, r.p50, r.p99, r.cpu, r.load,
                 r.first_call, r.compile]  # fmt: skip
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return [*out, ""]
