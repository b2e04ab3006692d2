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

from serveoff.report.claims import load_claims
from serveoff.report.plots import PLOTS
from tests.cli_runner import run_cli
from tests.commands import QUICK, leftovers, serveoff

TARGETS = 6  # torchserve:rest/grpc, the fake's rest/grpc, torch:inprocess, tf:inprocess
SERVER_TARGETS = 4
LOADS = 2  # c=1, c=4
FIGURE = re.compile(r"\d[\d,.]* ?(ms|requests/s|req/s)")


@pytest.fixture(scope="module")
def measured(built, artifacts_dir, tmp_path_factory, env, marker) -> Path:
    """A real `serveoff run` of TorchServe, the TF Serving test fake and both baselines, with its report."""
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "--artifacts", str(artifacts_dir), "--out", str(out), "--run-id", "real"]
    done = serveoff([*args, "--concurrency", "1,4", *QUICK], env, timeout=600)
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
    if chromium is None:
        pytest.fail("Debian's chromium is needed to test the report in a browser: run ./setup.sh")
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
        ("schema", "has schema 'serveoff.results/0', not 'serveoff.results/1'"),
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
