"""`serveoff report`: the report of a real run, opened in a real browser (Debian's chromium, headless).

The run measures real TorchServe and both in-process baselines. Its TF Serving arm is the test fake (TF
Serving's binary cannot be installed here), so every claim that needs TF Serving must read "not testable on
this run", and no figure of the fake may be labelled TF Serving.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from serveoff.loadtest.probes.schema import ProbeResult, ProbesFile, Sample
from serveoff.report.claims import load_claims
from serveoff.report.plots import PLOTS
from serveoff.serving import runtimes
from serveoff.serving.targets import SERVERS
from tests.cli_runner import run_cli
from tests.commands import QUICK_SETTLED, leftovers, serveoff
from tests.test_gate_rules import one_error_line, save, unwritable
from tests.test_gate_rules import point as gate_point
from tests.test_gate_rules import run as gate_run
from tests.test_gate_rules import windows as gate_windows

SERVER_TARGETS = 2 * len(SERVERS)  # every server's rest and grpc (TF Serving's from its test double)
TARGETS = SERVER_TARGETS + len(runtimes.names())  # and every in-process runtime (all installed here)
LOADS = 2  # c=1, c=4
FIGURE = re.compile(r"\d[\d,.]* ?(ms|requests/s|req/s)")


@pytest.fixture(scope="module")
def measured(built, artifacts_dir, tmp_path_factory, env, marker) -> Path:
    """A real `serveoff run` of every server (TF Serving's test double) and every runtime, with its report."""
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "--artifacts", str(artifacts_dir), "--out", str(out), "--run-id", "real"]
    done = serveoff([*args, "--concurrency", "1,4", *QUICK_SETTLED], env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {out / 'real' / 'report.html'} (summary: report.md)" in done.stdout
    assert leftovers(marker) == []
    return out / "real"


class Element:
    """A node of the rendered DOM."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find(self, keep) -> list[Element]:
        found = [self] if keep(self) else []
        for child in self.children:
            found += child.find(keep)
        return found


class DomTree(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.root = self.node = Element("#document", {}, None)

    def handle_starttag(self, tag, attrs) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(element)
        if tag not in self.VOID:
            self.node = element

    def handle_startendtag(self, tag, attrs) -> None:
        self.node.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.node))

    def handle_endtag(self, tag) -> None:
        node = self.node
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.node = node.parent


def rendered(html: Path, profile: Path) -> Element:
    """The report's DOM after the browser ran its scripts, with every network lookup refused."""
    chromium = shutil.which("chromium")
    if chromium is None:  # .ci/run makes sure it is there, so CI always runs this test
        pytest.skip("Debian's chromium is not installed (./setup.sh installs it as root): no browser test")
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}"]
    args += ["--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=20000", "--dump-dom"]
    done = subprocess.run([*args, html.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    tree = DomTree()
    tree.feed(done.stdout)
    return tree.root


def drawn(plot: Element) -> tuple[int, int]:
    """Traces and data marks the browser drew in a plot's axes (its legend excluded)."""
    layers = plot.find(lambda e: e.classes & {"scatterlayer", "barlayer"})
    traces = [t for layer in layers for t in layer.find(lambda e: "trace" in e.classes)]
    marks = 0
    for trace in traces:
        if "bars" in trace.classes:
            bars = trace.find(lambda e: e.tag == "path" and "point" in e.parent.classes)
            marks += len([bar for bar in bars if bar.attrs.get("d", "M0,0Z") != "M0,0Z"])
        else:
            points = trace.find(lambda e: "point" in e.classes and e.attrs.get("d"))
            lines = trace.find(lambda e: "js-line" in e.classes and e.attrs.get("d", "").startswith("M"))
            marks += len(points) or len(lines)
    return len(traces), marks


def test_the_report_renders_every_plot_with_its_data_in_a_browser(measured, tmp_path) -> None:
    dom = rendered(measured / "report.html", tmp_path / "profile")
    plots = {e.attrs["data-plot"]: e for e in dom.find(lambda e: e.tag == "section" and "plot" in e.classes)}
    assert set(plots) == set(PLOTS)
    expected = {  # traces, marks: one marker per target and load, one bar per server target and load
        "throughput": (TARGETS, TARGETS * LOADS),
        "latency": (2 * TARGETS, 2 * TARGETS * LOADS),  # p50 and p99
        "cdf": (TARGETS, TARGETS),  # one line each
        "tax": (2 * SERVER_TARGETS, 2 * SERVER_TARGETS * LOADS),
        "cpu": (SERVER_TARGETS, SERVER_TARGETS * LOADS),  # the baselines share the generator's CPU
        "memory": (SERVER_TARGETS, SERVER_TARGETS * LOADS),
    }
    assert {name: drawn(plot) for name, plot in plots.items()} == expected


def test_the_readiness_section_renders_its_plots_in_a_browser(
    measured, tmp_path, capsys, monkeypatch
) -> None:
    # The probes' own figures are tested against the servers in test_probes.py; here a hand-written
    # probes.json beside a real run checks what the browser draws of it.
    run = tmp_path / "run"
    shutil.copytree(measured, run)
    doc = ProbesFile({"overload_s": 6.0})
    for server, recovery in (("torchserve", 1.5), ("kserve", 0.5)):
        series = [Sample(float(t), 50, 0, 1.0, 2.0 + t, phase="2x" if t else "baseline") for t in range(4)]
        doc.results += [
            ProbeResult("overload", server, "digits-mlp", f"{server} 1.0", False, {"recovery_5x_s": recovery},
                        series=series),
            ProbeResult("model_update", server, "digits-mlp", f"{server} 1.0", False, {"failed_requests": 0},
                        series=series[:3]),
        ]  # fmt: skip
    doc.write(run)
    done = run_cli(["report", str(run)], capsys, monkeypatch)
    assert done.code == 0, done.stderr
    dom = rendered(run / "report.html", tmp_path / "profile")
    plots = {e.attrs["data-plot"]: e for e in dom.find(lambda e: e.tag == "section" and "plot" in e.classes)}
    drawn_plots = {name: drawn(plots[name]) for name in plots if name.startswith("readiness-")}
    # one p99 line per server through the overload (4 slices) and the rollout (3); a recovery bar each
    expected = {"readiness-overload": (2, 8), "readiness-rollout": (2, 6), "readiness-recovery": (1, 2)}
    assert drawn_plots == expected
    (table,) = dom.find(lambda e: e.attrs.get("id") == "readiness-table")
    assert len(table.find(lambda e: e.tag == "tr")) == 1 + len(doc.results)


def test_the_report_states_fairness_verdicts_status_and_the_manifest(measured, tmp_path) -> None:
    html = (measured / "report.html").read_text()
    results = json.loads((measured / "results.json").read_text())
    dom = rendered(measured / "report.html", tmp_path / "profile")
    (box,) = dom.find(lambda e: e.attrs.get("id") == "fairness-box")
    rows = [e for e in box.find(lambda e: e.tag == "th")]
    assert len(rows) >= 6
    for what in ("CPUs", "Threads", "Batching", "Wire payload", "Model"):
        assert f"<th>{what}</th>" in html
    assert "off (batch size 1) on every server" in html
    assert "archived on 7 August 2025" in html  # TorchServe's status, for users choosing a server
    manifest = re.search(r'<pre id="manifest-json">(.*?)</pre>', html, re.S).group(1)
    assert json.loads(unescape(manifest)) == results["manifest"]
    assert "<h3>digits-mlp</h3>" in html and "TorchServe REST: up to" in html
    summary = (measured / "report.md").read_text()
    assert summary.startswith("## serveoff run `real` (complete)")
    assert "| digits-mlp | TorchServe REST | c=4 |" in summary


def test_claims_that_need_tf_serving_are_not_testable_on_a_run_with_the_fake(measured) -> None:
    html = (measured / "report.html").read_text()
    statuses = dict(re.findall(r'data-claim="([^"]+)" data-status="([^"]+)"', html))
    claims = load_claims()
    assert set(statuses) == {c.id for c in claims}
    needs_tf_serving = [c.id for c in claims if "tfserving" in json.dumps(c.predicate)]
    assert len(needs_tf_serving) >= 3
    for claim in needs_tf_serving:
        assert statuses[claim] == "not testable", claim
    baselines_only = [
        c.id
        for c in claims
        if set(re.findall(r'"(torch|tf)(?::inprocess)?"', json.dumps(c.predicate))) == {"torch", "tf"}
        and "tfserving" not in json.dumps(c.predicate)
    ]
    assert baselines_only, "the ledger should hold claims the in-process baselines can settle"
    for claim in baselines_only:
        assert statuses[claim] in ("supported", "refuted", "inconclusive"), claim
    assert "test double" in html


def test_no_figure_of_the_fake_is_labelled_tf_serving(measured) -> None:
    html = (measured / "report.html").read_text()
    names = re.findall(r'"name":"([^"]+)"', html.split("</script>", 1)[1])  # the plots, not plotly.js
    fake = [n for n in names if "tfserving" in n]
    assert fake and all(n.startswith("test double of tfserving:") for n in fake)
    assert not [n for n in names if "TF Serving" in n]
    summary = (measured / "report.md").read_text()
    for text in (summary, re.sub(r"<[^>]+>", "\n", html.split("</script>", 1)[1])):
        labelled = [line for line in text.splitlines() if "TF Serving" in line and FIGURE.search(line)]
        assert labelled == []


def test_the_report_opens_offline(measured) -> None:
    html = (measured / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img[^>]+src=\"http", html)
    assert "Plotly.newPlot" in html  # the library is inlined, not fetched


def test_a_report_against_a_baseline_shows_the_gate_comparison(measured, tmp_path, capsys, monkeypatch):
    out = tmp_path / "compared.html"
    done = run_cli(
        ["report", str(measured), "--baseline", str(measured), "--out", str(out)], capsys, monkeypatch
    )
    assert done.code == 0, done.stderr
    html, summary = out.read_text(), out.with_suffix(".md").read_text()
    assert 'id="comparison-table"' in html and "Against baseline run real" in html
    assert "<td>test double of tfserving:rest</td>" in html  # the gate's figures name their source too
    assert "### Against baseline `real`: PASS" in summary  # a run against itself changes nothing


def without_targets(measured: Path, tmp_path: Path, drop: str) -> Path:
    doc = json.loads((measured / "results.json").read_text())
    doc["points"] = [p for p in doc["points"] if not p["target"].startswith(drop)]
    doc["manifest"]["plan"]["targets"] = [
        t for t in doc["manifest"]["plan"]["targets"] if not t.startswith(drop)
    ]
    (tmp_path / "fewer").mkdir()
    (tmp_path / "fewer" / "results.json").write_text(json.dumps(doc))
    return tmp_path / "fewer"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist; pass a run directory"),
        ("schema", "has schema 'serveoff.results/0', not 'serveoff.results/3'"),
        ("targets", "targets"),
        ("rules", "rules"),
        ("claims", "claim 'mine'"),
    ],
)
def test_bad_input_is_one_clear_line(case, message, measured, tmp_path, capsys, monkeypatch) -> None:
    if case == "missing":
        args = ["report", str(tmp_path / "nowhere")]
    elif case == "schema":
        doc = json.loads((measured / "results.json").read_text()) | {"schema": "serveoff.results/0"}
        (tmp_path / "results.json").write_text(json.dumps(doc))
        args = ["report", str(tmp_path)]
    elif case == "targets":
        args = ["gate", str(without_targets(measured, tmp_path, "tf")), "--baseline", str(measured)]
    elif case == "rules":
        (tmp_path / "gates.yaml").write_text("rules:\n  - metric: p99\n    max_increase: [ten percent\n")
        args = ["gate", str(measured), "--baseline", str(measured), "--rules", str(tmp_path / "gates.yaml")]
    else:
        (tmp_path / "mine.yaml").write_text(
            "claims:\n  - id: mine\n    claim: x\n    sources: [{article: a, file: b}]\n"
            "    predicate: {better: torch}\n"
        )
        args = [
            "report",
            str(measured),
            "--claims",
            str(tmp_path / "mine.yaml"),
            "--out",
            str(tmp_path / "r.html"),
        ]
    done = run_cli(args, capsys, monkeypatch)
    lines = done.stderr.strip().splitlines()
    assert done.code == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("serveoff: error: ") and message in lines[0], done.stderr


# --- reports of synthetic runs: what a reader must not be misled by -----------------------------------


def synthetic(tmp_path: Path, points: list[dict], loads: tuple[int, ...]) -> Path:
    """A run directory holding ``points`` of TorchServe REST (made as the gate's tests make them)."""
    (path,) = save([gate_run(tmp_path, "synthetic", points, loads=loads)])
    return Path(path)


def without_p99(measured: dict, value: float | None) -> dict:
    """The point with its p99 replaced by ``value``: NaN, or null (as the results writer stores NaN)."""
    measured["summary"]["latency_us"]["p99"] = {"value": value, "low": None, "high": None}
    return measured


NAN = re.compile(r"\bnan\b", re.I)


def test_a_failing_point_is_never_quoted_as_capacity(tmp_path, capsys, monkeypatch) -> None:
    failing = gate_windows(2, requests=2000, errors=[6000] * 8)  # 75% failed, at twice the answered rate
    lost = gate_point(None, concurrency=8) | {"error": "digits-mlp torchserve:rest c=8: none was answered"}
    overload = {"overloaded": True, "overload": "2.0% of 9,000 scheduled requests failed or unanswered"}
    queued = gate_point(gate_windows(3, requests=1500), concurrency=2) | overload  # flagged by the bench
    points = [gate_point(gate_windows(1), concurrency=1), queued, gate_point(failing, concurrency=4), lost]
    run_dir = synthetic(tmp_path, points, loads=(1, 2, 4, 8))
    done = run_cli(["report", str(run_dir)], capsys, monkeypatch)
    assert done.code == 0, done.stderr
    summary = (run_dir / "report.md").read_text()
    verdict = next(line for line in summary.splitlines() if line.startswith("- TorchServe REST: up to"))
    assert "(c=1)" in verdict and "at c=1 p50" in verdict
    assert "Left out of these figures: c=2: overloaded: 2.0% of 9,000 scheduled requests" in verdict
    assert "c=4: 75% of requests failed, above the 0.1% limit" in verdict
    notes = [line for line in summary.splitlines() if line.startswith("> **Note:**")]
    left_out = next(n for n in notes if "Left out of the capacity and latency verdicts: " in n)
    assert "digits-mlp TorchServe REST c=2 (overloaded: " in left_out
    assert "digits-mlp TorchServe REST c=4 (75% of requests failed" in left_out
    dropped = next(n for n in notes if "have no figures" in n)
    assert "1 point(s) have no figures and are missing from this report" in dropped
    assert "digits-mlp TorchServe REST c=8 (digits-mlp torchserve:rest c=8: none was answered)" in dropped
    html = (run_dir / "report.html").read_text()
    assert "have no figures and are missing from this report" in html


@pytest.mark.parametrize("value", [float("nan"), None])
def test_a_figure_that_is_not_a_number_reads_missing(tmp_path, capsys, monkeypatch, value) -> None:
    points = [without_p99(gate_point(gate_windows(1)), value), gate_point(gate_windows(2), concurrency=4)]
    run_dir = synthetic(tmp_path, points, loads=(1, 4))
    done = run_cli(["report", str(run_dir)], capsys, monkeypatch)
    assert done.code == 0, done.stderr
    summary = (run_dir / "report.md").read_text()
    assert not NAN.search(summary), summary
    row = next(row for row in summary.splitlines() if row.startswith("| digits-mlp | TorchServe REST | c=1 "))
    assert row.split(" | ")[5] == "missing"  # the p99 column
    assert "Figures missing from results.json (null or not a finite number), shown as “missing”: " in summary
    assert "digits-mlp TorchServe REST c=1 p99" in summary
    html = (run_dir / "report.html").read_text()
    assert not NAN.search(html.split("</script>", 1)[1])


def test_a_claims_file_without_a_quote_is_reported(claims_without_quote, tmp_path, capsys, monkeypatch):
    run_dir = synthetic(tmp_path, [gate_point(gate_windows(1))], loads=(1,))
    out = tmp_path / "out" / "report.html"
    args = ["report", str(run_dir), "--claims", str(claims_without_quote), "--out", str(out)]
    done = run_cli(args, capsys, monkeypatch)
    assert done.code == 0, done.stderr
    html = out.read_text()
    assert 'data-claim="mine-no-quote"' in html
    assert "My serving notes (notes.md)</td>" in html  # the source, with no quote after it


@pytest.fixture
def claims_without_quote(tmp_path: Path) -> Path:
    """A valid claims file whose one source has no `quote:` (it is optional)."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        "claims:\n  - id: mine-no-quote\n    claim: gRPC beats REST on TorchServe\n"
        "    sources: [{article: My serving notes, file: notes.md}]\n"
        "    predicate: {better: 'torchserve:grpc', than: 'torchserve:rest', metric: p50}\n"
    )
    return path


@pytest.mark.parametrize("case", ["parent is a file", "a directory", "read-only directory"])
def test_an_unwritable_report_path_is_one_line(tmp_path, capsys, monkeypatch, case) -> None:
    run_dir = synthetic(tmp_path, [gate_point(gate_windows(1))], loads=(1,))
    target = unwritable(tmp_path, case)
    done = run_cli(["report", str(run_dir), "--out", str(target)], capsys, monkeypatch)
    line = one_error_line(done)
    assert f"cannot write the report to {target}: " in line and "pass --out a file" in line
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_malformed_run_is_one_line_for_the_report_too(tmp_path, capsys, monkeypatch) -> None:
    run_dir = synthetic(tmp_path, [gate_point(gate_windows(1))], loads=(1,))
    doc = json.loads((run_dir / "results.json").read_text())
    doc["points"][0]["summary"]["throughput_rps"] = "fast"
    (run_dir / "results.json").write_text(json.dumps(doc))
    line = one_error_line(run_cli(["report", str(run_dir)], capsys, monkeypatch))
    assert "points[0].summary.throughput_rps must be a mapping, not a string ('fast')" in line


def test_a_report_against_a_partial_baseline_names_what_went_unchecked(tmp_path, capsys, monkeypatch):
    base = gate_run(tmp_path, "base", [gate_point(gate_windows(1))], loads=(1, 4))
    base.doc |= {"status": "partial", "error": "interrupted"}
    points = [gate_point(gate_windows(2)), gate_point(gate_windows(3), concurrency=4)]
    current = gate_run(tmp_path, "pr", points, loads=(1, 4))
    current.doc |= {"status": "partial", "error": "stopped by SIGTERM"}
    current_dir, base_dir = save([current, base])
    done = run_cli(["report", current_dir, "--baseline", base_dir], capsys, monkeypatch)
    assert done.code == 0, done.stderr
    summary = (Path(current_dir) / "report.md").read_text()
    assert "### Against baseline `base`: FAIL" in summary
    assert "> **FAIL:** run pr is partial (stopped by SIGTERM)" in summary
    assert "> **Warning:** baseline run base is partial (interrupted)" in summary
    assert "> **Warning:** digits-mlp TorchServe REST c=4 has no baseline counterpart" in summary
    html = (Path(current_dir) / "report.html").read_text()
    assert 'id="unmatched"' in html and "FAIL: run pr is partial" in html
