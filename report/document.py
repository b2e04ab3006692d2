"""``serveoff report``: one self-contained HTML file and a Markdown summary from a run's results."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import jinja2
import plotly.io as pio
from plotly.offline import get_plotlyjs

from serveoff.report import markdown
from serveoff.report.claims import Verdict, evaluate, load_claims
from serveoff.report.gate import cells, check_runs, differences, load_rules, passed
from serveoff.report.plots import PLOTS
from serveoff.report.runs import Run
from serveoff.report.verdicts import fairness, model_verdict, notes, searches

REPORT_FILE = "report.html"


@dataclass
class Comparison:
    """This run against a baseline run, under the gate's rules."""

    baseline_id: str
    rules: str
    passed: bool
    differences: list[str]
    rows: list[dict]


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


def build_report(
    run: Run, baseline: Run | None = None, claims: list[Path] | None = None, rules: Path | None = None
) -> Report:
    """The report of ``run``, compared with ``baseline`` when given."""
    comparison = None
    if baseline is not None:
        gate_rules = load_rules(rules)
        checks = check_runs(run, baseline, gate_rules)
        comparison = Comparison(
            baseline_id=baseline.run_id,
            rules=", ".join(r.describe() for r in gate_rules.rules),
            passed=passed(checks),
            differences=differences(run, baseline),
            rows=[cells(c) for c in checks],
        )
    return Report(
        run=run,
        notes=notes(run),
        verdicts={model: model_verdict(run, model) for model in run.models},
        fairness=fairness(run),
        claims=evaluate(load_claims(claims), run),
        searches=searches(run),
        comparison=comparison,
        sources=list(dict.fromkeys(p["source"] for p in run.points)),
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
        figures=figures,
        plotly_js=get_plotlyjs(),
        manifest_json=json.dumps(report.run.manifest, indent=1),
    )


def write_report(report: Report, out: Path | None = None) -> tuple[Path, Path]:
    """Write the HTML report (default ``<run>/report.html``) and its Markdown summary beside it."""
    html_path = out or report.run.path / REPORT_FILE
    md_path = html_path.with_suffix(".md")
    _write(html_path, render_html(report))
    _write(md_path, markdown.render(report))
    return html_path, md_path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
