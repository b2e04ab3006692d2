"""``serveoff report``: one self-contained HTML file and a Markdown summary from a run's results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import jinja2
import plotly.io as pio
from plotly.offline import get_plotlyjs

from serveoff.report import markdown
from serveoff.report.claims import Verdict, evaluate, load_claims
from serveoff.report.files import write_atomically
from serveoff.report.gate import cells, error_limit, load_rules, run_gate
from serveoff.report.harness import HarnessView, harness_view
from serveoff.report.plots import PLOTS
from serveoff.report.readiness import ReadinessView, readiness_view
from serveoff.report.runs import Run
from serveoff.report.runtimes import RuntimeRow, runtime_rows
from serveoff.report.verdicts import fairness, model_verdict, notes, searches

REPORT_FILE = "report.html"


@dataclass
class Comparison:
    """This run against a baseline run, under the gate's rules."""

    baseline_id: str
    rules: str
    passed: bool
    warnings: list[str]  # setups that differ, a baseline that did not finish
    rows: list[dict]
    failures: list[str] = field(default_factory=list)  # a run that did not finish fails the gate
    unmatched: list[str] = field(default_factory=list)  # points of this run the baseline lacks


@dataclass
class Report:
    """Everything a report shows, ready to render as HTML or Markdown."""

    run: Run
    notes: list[str]
    verdicts: dict[str, list[str]]
    fairness: list[tuple[str, str]]
    claims: list[Verdict]
    searches: list[str]
    comparison: Comparison | None = None
    sources: list[str] = field(default_factory=list)
    runtimes: list[RuntimeRow] = field(default_factory=list)  # the in-process runtimes side by side
    harness: HarnessView | None = None  # the load generator's own floor (manifest.harness)
    readiness: ReadinessView | None = None  # `serveoff probe`'s results (probes.json), when the run has them


def build_report(
    run: Run, baseline: Run | None = None, claims: list[Path] | None = None, rules: Path | None = None
) -> Report:
    """The report of ``run``, compared with ``baseline`` when given.

    Points whose share of failed requests breaks the gate rules' error-rate limit (``rules``, default the
    built-in one) never stand for a target's capacity or latency in the verdicts.
    """
    gate_rules = load_rules(rules)
    limit = error_limit(gate_rules)
    comparison = None
    if baseline is not None:
        gate = run_gate([run], [baseline], gate_rules)
        comparison = Comparison(
            baseline_id=baseline.run_id,
            rules=", ".join(r.describe() for r in gate_rules.rules),
            passed=gate.passed,
            warnings=gate.warnings,
            rows=[cells(c) for c in gate.checks],
            failures=gate.failures,
            unmatched=[point.describe() for point in gate.unmatched],
        )
    return Report(
        run=run,
        notes=notes(run, limit),
        verdicts={model: model_verdict(run, model, limit) for model in run.models},
        fairness=fairness(run),
        claims=evaluate(load_claims(claims), run),
        searches=searches(run),
        comparison=comparison,
        sources=list(dict.fromkeys(p.source for p in run.points)),
        runtimes=runtime_rows(run, limit),
        harness=harness_view(run),
        readiness=readiness_view(run.path),
    )


def render_html(report: Report) -> str:
    """The report as one HTML page with plotly.js inlined, so it opens without a network."""
    figures = {}
    for model in report.run.models:
        plots = []
        for name, plot in PLOTS.items():
            figure = plot(report.run, model)
            if figure is not None:
                div = pio.to_html(
                    figure, full_html=False, include_plotlyjs=False, div_id=f"plot-{model}-{name}",
                    config={"displaylogo": False, "responsive": True},
                )  # fmt: skip
                plots.append((name, div))
        figures[model] = plots
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(files("serveoff.report").joinpath("template.html.j2").read_text())
    return template.render(
        run=report.run,
        notes=report.notes,
        verdicts=report.verdicts,
        fairness=report.fairness,
        claims=report.claims,
        comparison=report.comparison,
        searches=report.searches,
        sources=report.sources,
        runtimes=report.runtimes,
        harness=report.harness,
        readiness=report.readiness,
        figures=figures,
        plotly_js=get_plotlyjs(),
        manifest_json=json.dumps(report.run.manifest, indent=1),
    )


def write_report(report: Report, out: Path | None = None) -> tuple[Path, Path]:
    """Write the HTML report (default ``<run>/report.html``) and its Markdown summary beside it.

    One clear line when either cannot be written (a read-only directory, a parent that is a file).
    """
    html_path = out or report.run.path / REPORT_FILE
    md_path = html_path.with_suffix(".md")
    _write(html_path, render_html(report))
    _write(md_path, markdown.render(report))
    return html_path, md_path


def _write(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text), "the report", "--out")
