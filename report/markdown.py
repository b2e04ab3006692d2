"""The report's Markdown summary, for CI logs and pull-request comments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serveoff.report import harness, readiness, runtimes
from serveoff.report.format import percent, with_interval
from serveoff.report.runs import target_title

if TYPE_CHECKING:
    from serveoff.report.document import Report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: Report) -> str:
    """A short Markdown summary: notes, verdicts, key figures, claims, baseline comparison, fairness."""
    run = report.run
    out = [f"## serveoff run `{run.run_id}` ({run.doc.get('status')})", ""]
    out += [f"Measured: {', '.join(report.sources)}.", ""]
    out += [f"> **Note:** {_cell(note)}\n" for note in report.notes]
    out += ["### Verdicts", ""]
    for model, lines in report.verdicts.items():
        out += [f"**{model}**", "", *(f"- {line}" for line in lines), ""]
    out += _figures(report)
    out += runtimes.markdown(report.runtimes)
    out += harness.markdown(report.harness)
    out += readiness.markdown_lines(report.readiness) if report.readiness else []
    out += ["### Claims", "", "| verdict | claim | why |", "| --- | --- | --- |"]
    out += [f"| {v.status} | {_cell(v.claim.claim)} | {_cell(v.reason)} |" for v in report.claims]
    out.append("")
    if report.comparison:
        comparison = report.comparison
        verdict = "PASS" if comparison.passed else "FAIL"
        shown = [row for row in comparison.rows if row["outcome"] != "PASS"]
        out += [f"### Against baseline `{comparison.baseline_id}`: {verdict}", ""]
        out += [f"> **FAIL:** {_cell(line)}\n" for line in comparison.failures]
        warnings = [*comparison.warnings, *comparison.unmatched]
        out += [f"> **Warning:** {_cell(line)}\n" for line in warnings]
        out += [f"Rules: {comparison.rules}. {len(comparison.rows) - len(shown)} of {len(comparison.rows)} "
                "checks passed cleanly.", ""]  # fmt: skip
        if shown:
            out += ["| model | target | load | metric | baseline | this run | change [95% CI] | outcome |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            out += [
                f"| {r['model']} | {r['target']} | {r['load']} | {r['metric']} | {r['baseline']} | "
                f"{r['current']} | {r['change']} | {r['outcome']} |"
                for r in shown
            ]
            out.append("")
    out += ["### Fairness", "", *(f"- **{what}**: {_cell(how)}" for what, how in report.fairness), ""]
    return "\n".join(out) + "\n"


def _figures(report: Report) -> list[str]:
    out = ["### Figures (95% intervals)", "",
           "| model | target | load | requests/s | p50 | p99 | errors |",
           "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for p in report.run.points:
        s = p.summary
        cells = [p.model, _cell(target_title(p)), p.label, with_interval(s.throughput_rps)]
        cells += [with_interval(s.latency("p50"), "ms"), with_interval(s.latency("p99"), "ms")]
        out.append("| " + " | ".join([*cells, percent(s.error_rate.value)]) + " |")
    return [*out, ""]
