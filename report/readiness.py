"""The report's "Production readiness" section: what `serveoff probe` measured, read from ``probes.json``.

Plots: latency over time through the overload and through the rollout, and recovery times side by side.
A test double's results are shown labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from serveoff.loadtest.probes.schema import ProbeResult, ProbesFile, read_probes

RECOVERIES = (
    ("overload", "recovery_2x_s", "after 2x overload"),
    ("overload", "recovery_5x_s", "after 5x overload"),
    ("process_failure", "recovery_s", "after the worker was killed"),
)


@dataclass
class ReadinessView:
    """The section: one row per probe and server, and the plots as HTML divs (name, html)."""

    rows: list[tuple[str, str, str, str]]  # probe, server (labelled when a test double), figures, findings
    plots: list[tuple[str, str]] = field(default_factory=list)


def readiness_view(run_dir: Path) -> ReadinessView | None:
    """The section of the run in ``run_dir``, or ``None`` when it has no ``probes.json``."""
    doc = read_probes(run_dir)
    if doc is None:
        return None
    rows = [(r.probe, _who(r), _figures(r), _findings(r)) for r in doc.results]
    figures = {"readiness-overload": _timeline(doc, "overload", "Latency through the overload"),
               "readiness-rollout": _timeline(doc, "model_update", "Latency through the rollout"),
               "readiness-recovery": _recoveries(doc)}  # fmt: skip
    plots = [(name, _div(name, fig)) for name, fig in figures.items() if fig is not None]
    return ReadinessView(rows, plots)


def _who(result: ProbeResult) -> str:
    return f"{result.source} (test double: settles no claim)" if result.test_double else result.source


def _findings(result: ProbeResult) -> str:
    return "; ".join(result.findings + ([f"error: {result.error}"] if result.error else []))


def _figures(result: ProbeResult) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.figures.items())


def _timeline(doc: ProbesFile, probe: str, title: str) -> go.Figure | None:
    results = [r for r in doc.of(probe) if r.series]
    if not results:
        return None
    fig = go.Figure()
    for r in results:
        fig.add_scatter(x=[s.t_s for s in r.series], y=[s.p99_ms for s in r.series], mode="lines+markers",
                        name=f"{_who(r)} p99",
                        text=[f"{s.phase} {s.note}".strip() for s in r.series])  # fmt: skip
    fig.update_layout(title=title, xaxis_title="seconds from the probe's start",
                      yaxis_title="p99 latency (ms)")  # fmt: skip
    return fig


def _recoveries(doc: ProbesFile) -> go.Figure | None:
    fig = go.Figure()
    for probe, key, label in RECOVERIES:
        results = [r for r in doc.of(probe) if r.figures.get(key) is not None]
        if results:
            fig.add_bar(name=label, x=[_who(r) for r in results], y=[r.figures[key] for r in results])
    if not fig.data:
        return None
    fig.update_layout(title="Time to recover", yaxis_title="seconds", barmode="group")
    return fig


def _div(name: str, fig: go.Figure) -> str:
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{name}",
                       config={"displaylogo": False, "responsive": True})  # fmt: skip


def markdown_lines(view: ReadinessView) -> list[str]:
    """The section as Markdown: one table row per probe and server."""
    lines = ["## Production readiness", "", "| probe | server | figures | findings |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {p} | {w} | {f} | {n} |".replace("\n", " ") for p, w, f, n in view.rows]
    return [*lines, ""]


# Claims over probes.json (report/claims.py's ``probe_lower`` and ``probe_zero`` predicates)
PROBE_FORMS = {
    "probe_lower": ({"probe_lower", "probe", "figure"}, set()),  # [A, B]: A's figure is below B's
    "probe_zero": ({"probe_zero", "probe", "figure"}, set()),  # A: A's figure is 0 (e.g. failed requests)
}


def check_probe_predicate(predicate: dict) -> str | None:
    """What is wrong with a probe predicate's values (``None``: nothing)."""
    from serveoff.loadtest.probes.schema import PROBES
    from serveoff.serving.targets import SERVERS

    kind = "probe_lower" if "probe_lower" in predicate else "probe_zero"
    named = predicate[kind] if kind == "probe_lower" else [predicate[kind]]
    if predicate["probe"] not in PROBES:
        return f"unknown probe {predicate['probe']!r}; choose one of: {', '.join(PROBES)}"
    if len(named) != (2 if kind == "probe_lower" else 1) or any(s not in SERVERS for s in named):
        return f"`{kind}` names {'two servers' if kind == 'probe_lower' else 'one server'} of: " + (
            ", ".join(SERVERS))
    return None


def judge_probe(predicate: dict, run_dir: Path) -> tuple[str, str, list[str]]:
    """The verdict (status, reason, evidence) of a probe predicate on ``run_dir``'s probes.json."""
    doc = read_probes(run_dir)
    untestable = "not testable on this run: "
    if doc is None:
        return "not testable", untestable + "it has no probes.json (run `serveoff probe --beside`)", []
    kind = "probe_lower" if "probe_lower" in predicate else "probe_zero"
    named = predicate[kind] if kind == "probe_lower" else [predicate[kind]]
    figure, values, evidence = predicate["figure"], [], []
    for server in named:
        found = [r for r in doc.of(predicate["probe"]) if r.server == server]
        if not found or found[0].test_double:
            why = "came from a test double" if found else "were not measured"
            return "not testable", untestable + f"the {server} {predicate['probe']} figures {why}", []
        values.append(found[0].figures.get(figure))
        evidence.append(f"{server} {predicate['probe']} {figure}: {values[-1]}")
    if any(not isinstance(v, int | float) or isinstance(v, bool) for v in values):
        return "inconclusive", f"{figure} was not measured for every server named", evidence
    if kind == "probe_zero":
        verdict = "supported" if values[0] == 0 else "refuted"
        return verdict, f"{named[0]}'s {figure} is {values[0]}", evidence
    if values[0] == values[1]:
        return "inconclusive", f"{figure} is the same for both", evidence
    verdict = "supported" if values[0] < values[1] else "refuted"
    return verdict, f"{named[0]}'s {figure} is {values[0]}, {named[1]}'s {values[1]}", evidence
