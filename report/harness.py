"""How the report shows the harness calibration: the load generator's own floor beside the servers' figures.

``manifest.harness`` (written by ``loadtest/calibrate.py``) holds the generator's latency at concurrency 1
against a trivial endpoint and its capacity. Beside each target's own c=1 median, the share that floor
makes of it tells a reader how much of the figure is the harness rather than the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from serveoff.report.format import finite, ms, significant
from serveoff.report.runs import Run, target_title


@dataclass(frozen=True)
class HarnessRow:
    """One target's c=1 median and the share of it the harness's own floor makes."""

    model: str
    target: str
    p50: str
    share: str


@dataclass(frozen=True)
class HarnessView:
    """The calibration as the report shows it: one sentence, and a row per c=1 point."""

    summary: str
    rows: list[HarnessRow]


def harness_view(run: Run) -> HarnessView | None:
    """The run's calibration (``None`` when the run has none: calibration off, or an older run)."""
    harness = run.manifest.get("harness")
    if not isinstance(harness, dict):
        return None
    if harness.get("error"):
        return HarnessView(f"The harness calibration failed: {harness['error']}.", [])
    floor = harness.get("c1_p50_us")
    capacity = harness.get("capacity_rps")
    summary = (
        f"Against a trivial endpoint on the servers' CPUs, the load generator (CPUs "
        f"{harness.get('generator_cpus')}) answers at c=1 in p50 {ms(floor)}, p99 "
        f"{ms(harness.get('c1_p99_us'))}, and sends at most "
        f"{significant(capacity) if finite(capacity) else 'missing'} requests/s at "
        f"c={harness.get('capacity_concurrency')}: every figure below includes that floor."
    )
    rows = []
    for point in run.points:
        if point.baseline or point.phase != "sweep" or point.load.get("concurrency") != 1:
            continue
        p50 = point.summary.latency("p50").value
        share = f"{floor / p50:.0%}" if finite(floor) and finite(p50) and p50 else "missing"
        rows.append(HarnessRow(point.model, target_title(point), ms(p50), share))
    return HarnessView(summary, rows)


def markdown(view: HarnessView | None) -> list[str]:
    """The calibration in the Markdown summary."""
    if view is None:
        return []
    out = ["### Harness calibration", "", view.summary, ""]
    if view.rows:
        out += ["| model | target | p50 at c=1 | harness floor's share |", "| --- | --- | --- | --- |"]
        out += [f"| {r.model} | {r.target} | {r.p50} | {r.share} |" for r in view.rows]
        out.append("")
    return out
