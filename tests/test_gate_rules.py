"""The CI performance gate on synthetic runs: noise-aware rules, matching, JUnit output and rules files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from serveoff.errors import ServeoffError
from serveoff.loadtest.histograms import encode, merge, new_histogram, record
from serveoff.loadtest.stats import Window, estimate
from serveoff.report.gate import (
    DEFAULT_RULES,
    Gate,
    GateRules,
    Rule,
    check_runs,
    differences,
    load_rules,
    passed,
    run_gate,
    table,
    write_junit,
)
from serveoff.report.runs import Run
from tests.cli_runner import CliResult, run_cli

P99 = Rule("p99", max_increase=0.10, max_decrease=None, max=None)
THROUGHPUT = Rule("throughput", max_increase=None, max_decrease=0.05, max=None)
ERRORS = Rule("error_rate", max_increase=None, max_decrease=None, max=0.001)
RULES = GateRules([P99, THROUGHPUT, ERRORS])


def windows(
    seed: int,
    slower: float = 1.0,
    noise: float = 0.0,
    errors: list[int] | None = None,
    count: int = 8,
    requests: int = 1000,
    spread: float = 0.3,
) -> list[Window]:
    """``count`` one-second windows of a closed loop: latencies ``slower`` times a lognormal around 5 ms
    (``spread``: its sigma), and about ``requests / slower`` answered. ``noise`` scales each window by its
    own lognormal factor, drawn from a fixed stream, so two runs with the same ``noise`` have the same
    window factors (the same point estimate) but wide intervals."""
    rng = np.random.default_rng(seed)
    factors = np.random.default_rng(99).lognormal(0, noise, count) if noise else np.ones(count)
    result = []
    for index, factor in enumerate(factors):
        answered = int(rng.poisson(requests / (slower * factor)))
        histogram = new_histogram()
        for latency in rng.lognormal(np.log(0.005), spread, answered) * slower * factor:
            record(histogram, latency)
        failed = {"HTTP 503": errors[index]} if errors and errors[index] else {}
        result.append(Window(index, 1.0, answered, failed, histogram, 0.1))
    return result


def point(measured: list[Window] | None, concurrency: int = 1, target: str = "torchserve:rest") -> dict:
    """A results entry laid out like ``measure.point_result``'s."""
    system, protocol = target.split(":")
    return {
        "model": "digits-mlp",
        "target": target,
        "system": system,
        "protocol": protocol,
        "baseline": protocol == "inprocess",
        "source": "torchserve 0.12.0",
        "phase": "sweep",
        "load": {"loop": "closed", "concurrency": concurrency},
        "label": f"c={concurrency}",
        "offered": float(concurrency),
        "batch_size": 1,
        "payload_bytes": 490,
        "started_at": "2026-01-01T00:00:00+00:00",
        "stable": True,
        "generator_busy_max": 0.1,
        "client_bound": False,
        "summary": estimate(measured, 1) if measured else None,
        "histogram": encode(merge(w.histogram for w in measured or [])),
        "windows": [w.to_json() for w in measured or []],
        "error": None,
    }


def run(
    path: Path,
    run_id: str,
    points: list[dict],
    targets: tuple[str, ...] = ("torchserve:rest",),
    loads: tuple[int, ...] = (1,),
    cpu: str = "Intel(R) Xeon(R) Processor",
    seed: int = 0,
) -> Run:
    """A run document as ``results.json`` holds it, with the plan that produced ``points``."""
    plan = {
        "models": ["digits-mlp"],
        "targets": list(targets),
        "points": [{"loop": "closed", "concurrency": c} for c in loads],
        "search": None,
        "batch_size": 1,
        "timeout_s": 10.0,
        "seed": seed,
    }
    manifest = {"machine": {"cpu_model": cpu}, "fairness": {"config": {"threads": 2}}, "plan": plan}
    doc = {"schema": "serveoff.results/1", "run_id": run_id, "status": "complete", "manifest": manifest}
    return Run(path=path / run_id, doc=doc | {"points": points})


def twelve_percent(seed: int, slower: float = 1.0, noise: float = 0.0) -> list[Window]:
    """Windows precise enough that a 12% change's point estimate is clearly beyond a 10% allowance."""
    return windows(seed, slower=slower, noise=noise, requests=2000, spread=0.05)


def by_metric(checks: list) -> dict:
    return {c.rule.metric: c for c in checks}


def test_identical_distributions_pass(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    current = run(tmp_path, "pr", [point(windows(2))])
    checks = check_runs(current, base, RULES)
    assert [c.outcome for c in checks] == ["pass", "pass", "pass"]
    assert passed(checks)
    p99 = by_metric(checks)["p99"]
    assert p99.ratio == pytest.approx(1.0, abs=0.05)
    assert p99.low < 1.0 < p99.high


def test_thirty_percent_slower_fails_with_its_size(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    current = run(tmp_path, "pr", [point(windows(2, slower=1.3))])
    checks = check_runs(current, base, RULES)
    found = by_metric(checks)
    assert found["p99"].outcome == "fail"
    assert found["p99"].ratio == pytest.approx(1.3, abs=0.06)
    assert found["p99"].low > 1.1
    assert found["throughput"].outcome == "fail"
    assert found["throughput"].ratio == pytest.approx(1 / 1.3, abs=0.02)
    assert found["throughput"].high < 0.95
    assert found["error_rate"].outcome == "pass"
    assert not passed(checks)
    assert "significantly beyond p99 +10% at most" in found["p99"].detail
    shown = table(checks)
    row = next(line for line in shown.splitlines() if " p99 " in line)
    assert "+3" in row and "FAIL" in row and " ms" in row


def test_a_change_within_noise_is_noisy_not_a_failure(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(twelve_percent(1, noise=0.5))])
    current = run(tmp_path, "pr", [point(twelve_percent(2, slower=1.12, noise=0.5))])
    checks = by_metric(check_runs(current, base, RULES))
    assert checks["p99"].ratio > 1.10
    assert checks["p99"].outcome == "noisy"
    assert checks["p99"].low <= 1.10
    assert "within noise" in checks["p99"].detail
    assert checks["throughput"].ratio < 0.95
    assert checks["throughput"].outcome == "noisy"
    assert passed(list(checks.values()))


def test_the_same_change_in_quiet_windows_fails(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(twelve_percent(1))])
    current = run(tmp_path, "pr", [point(twelve_percent(2, slower=1.12))])
    checks = by_metric(check_runs(current, base, RULES))
    assert checks["p99"].outcome == "fail"
    assert checks["throughput"].outcome == "fail"


@pytest.mark.parametrize(
    ("errors", "outcome", "words"),
    [
        ([0] * 8, "pass", "no request failed"),
        ([4] * 8, "fail", "is above the 0.1% limit"),  # 0.4% of the requests in every window
        # 0.2% overall, all in one window: its interval reaches below 0.1%, but the limit is absolute
        ([16] + [0] * 7, "fail", "is above the 0.1% limit"),
        ([4] + [0] * 7, "pass", "is within the 0.1% limit"),  # 0.05% overall
    ],
)
def test_error_rate_limit_is_absolute_on_the_current_run(
    tmp_path: Path, errors: list[int], outcome: str, words: str
) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    current = run(tmp_path, "pr", [point(windows(1, errors=errors))])
    check = by_metric(check_runs(current, base, RULES))["error_rate"]
    assert check.outcome == outcome
    assert words in check.detail
    assert check.ratio is None
    assert passed([check]) == (outcome != "fail")


def test_runs_of_different_targets_cannot_be_gated(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1), target="torchserve:rest")])
    current = run(tmp_path, "pr", [point(windows(1), target="tfserving:rest")], targets=("tfserving:rest",))
    with pytest.raises(ServeoffError) as err:
        check_runs(current, base, RULES)
    message = str(err.value)
    assert "\n" not in message
    assert "torchserve:rest" in message and "tfserving:rest" in message
    assert "same plan" in message


def test_runs_without_a_common_load_point_cannot_be_gated(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1), concurrency=1)])
    current = run(tmp_path, "pr", [point(windows(1), concurrency=8)], loads=(8,))
    with pytest.raises(ServeoffError, match="no load point"):
        check_runs(current, base, RULES)


def test_a_point_the_current_run_lost_fails(tmp_path: Path) -> None:
    loads = (1, 2, 4, 8)
    base = run(
        tmp_path,
        "base",
        [point(windows(1), concurrency=c) for c in loads],
        loads=loads,
    )
    current = run(
        tmp_path,
        "pr",
        [
            point(windows(2), concurrency=1),
            point(None, concurrency=2),
        ],  # 2 failed, 4 never ran, 8 not planned
        loads=(1, 2, 4),
    )
    checks = check_runs(current, base, RULES)
    outcomes = {(c.label, c.rule.metric): c.outcome for c in checks}
    assert {label for label, _ in outcomes} == {"c=1", "c=2", "c=4"}
    assert all(outcomes["c=1", m] == "pass" for m in ("p99", "throughput", "error_rate"))
    lost = [c for c in checks if c.label in ("c=2", "c=4")]
    assert len(lost) == 6
    assert all(c.outcome == "fail" and c.detail == "no measurement in current run" for c in lost)
    assert all(c.current is None and c.baseline is not None for c in lost)
    assert not passed(checks)


def test_junit_counts_failures_and_reports_noise(tmp_path: Path) -> None:
    base = run(
        tmp_path,
        "base",
        [point(windows(1), concurrency=1), point(twelve_percent(1, noise=0.5), concurrency=2)],
    )
    current = run(
        tmp_path,
        "pr",
        [
            point(windows(2, slower=1.3), concurrency=1),
            point(twelve_percent(2, slower=1.12, noise=0.5), concurrency=2),
        ],
    )
    checks = check_runs(current, base, RULES)
    assert [c.outcome for c in checks] == ["fail", "fail", "pass", "noisy", "noisy", "pass"]
    out = tmp_path / "gate" / "gate.xml"
    write_junit(Gate(checks), out, name="perf")
    suite = ET.parse(out).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("perf", "6", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases[:3]] == ["c=1 p99", "c=1 throughput", "c=1 error_rate"]
    assert {c.get("classname") for c in cases} == {"digits-mlp.torchserve:rest"}
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert [f.get("message") for f in failures] == [checks[0].detail, checks[1].detail]
    noisy = [c.find("system-out").text for c in cases if c.find("system-out") is not None]
    assert noisy == [checks[3].detail, checks[4].detail]
    assert not list(out.parent.glob("*.tmp"))


def test_table_shows_milliseconds_and_requests_per_second(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    checks = check_runs(run(tmp_path, "pr", [point(windows(2))]), base, RULES)
    lines = table(checks).splitlines()
    assert lines[0].split() == [
        "model", "target", "load", "metric", "baseline", "current", "change", "rule", "outcome",
    ]  # fmt: skip
    cells = re.split(r"\s{2,}", lines[1])
    assert cells[3] == "p99" and cells[4].endswith(" ms")
    shown = cells[4].removesuffix(" ms")
    assert len(shown.replace(".", "").lstrip("0")) == 3  # 3 significant digits
    assert float(shown) * 1000 == pytest.approx(by_metric(checks)["p99"].baseline, rel=0.005)
    assert f"{by_metric(checks)['throughput'].current:.1f} req/s" in lines[2]
    assert all(line.rstrip().endswith("PASS") for line in lines[1:])
    assert len({line.index("digits-mlp") for line in lines[1:]}) == 1


def test_differences_name_setup_changes_but_not_the_seed(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [], seed=0)
    same = run(tmp_path, "pr", [], seed=7)
    assert differences(same, base) == []
    other = run(tmp_path, "pr", [], loads=(1, 2), cpu="AMD EPYC", seed=7)
    found = differences(other, base)
    assert len(found) == 2
    assert found[0].startswith("machine.cpu_model differs") and "AMD EPYC" in found[0]
    assert found[1].startswith("plan.points differs")


def test_default_rules() -> None:
    rules = load_rules()
    assert DEFAULT_RULES.name == "gates.yaml"
    assert rules.source == str(DEFAULT_RULES)
    assert rules.confidence == 0.95
    assert [r.describe() for r in rules.rules] == [
        "p99 +10% at most",
        "throughput -5% at most",
        "error rate 0.1% at most",
    ]
    assert rules.rules == [P99, THROUGHPUT, ERRORS]


def test_rules_file_with_another_confidence(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"
    path.write_text("confidence: 0.9\nrules:\n  - {metric: p99.9, max_increase: 0.2}\n")
    rules = load_rules(path)
    assert rules == GateRules([Rule("p99.9", 0.2, None, None)], 0.9, str(path))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "does not exist"),
        ("rules: [{metric: p99, max_increase: 0.1}\n", "not valid YAML"),
        ("", "must be a mapping"),
        ("- metric: p99\n", "must be a mapping"),
        ("rule: []\n", "unknown key 'rule'"),
        ("rules:\n  - {metric: p99, max_increase: 0.1, window: 3}\n", "unknown key 'window'"),
        ("rules:\n  - {metric: p42, max_increase: 0.1}\n", "unknown metric 'p42'"),
        ("rules:\n  - {metric: throughput, max_increase: 0.1}\n", "takes `max_decrease`, not `max_increase`"),
        ("rules:\n  - {metric: error_rate, max_decrease: 0.1}\n", "takes `max`, not `max_decrease`"),
        ("rules:\n  - {metric: p99}\n", "needs a limit"),
        ("rules:\n  - {metric: p99, max_increase: -0.1}\n", "must be a number 0 or more"),
        ("rules:\n  - {metric: throughput, max_decrease: ten}\n", "must be a number between 0 and 1"),
        ("rules:\n  - {metric: error_rate, max: true}\n", "must be a number between 0 and 1"),
        ("rules:\n  - p99\n", "rule 1 must be a mapping"),
        ("rules: []\n", "non-empty `rules:` list"),
        ("confidence: 1.5\nrules: [{metric: p99, max_increase: 0.1}]\n", "confidence must be"),
        ("confidence: 0.5\nrules: [{metric: p99, max_increase: 0.1}]\n", "confidence must be"),
    ],
)
def test_malformed_rules_files_give_one_line(tmp_path: Path, text: str | None, words: str) -> None:
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ServeoffError) as err:
        load_rules(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert words in message


# --- what never passes: heavy failures, figures that are not numbers, runs that did not finish -------


def test_a_stall_that_fails_many_requests_fails_the_gate_however_noisy(tmp_path: Path) -> None:
    """As a 3 s stall does: one window loses most of its answers, 17% of the point's requests fail.

    The latency and throughput changes are within noise (one window of eight), but the error rate is an
    absolute limit, so the gate fails.
    """
    stalled = windows(2)
    slow = new_histogram()
    for latency in np.linspace(2.0, 3.0, 40):  # the few answered during the stall waited for it
        record(slow, latency)
    stalled[3] = Window(3, 1.0, 40, {"timeout": 1700}, slow, 0.1)
    base = run(tmp_path, "base", [point(windows(1))])
    current = run(tmp_path, "pr", [point(stalled)])
    checks = by_metric(check_runs(current, base, RULES))
    assert checks["error_rate"].outcome == "fail"
    assert checks["error_rate"].current == pytest.approx(1700 / (1700 + sum(w.requests for w in stalled)))
    assert "is above the 0.1% limit" in checks["error_rate"].detail
    assert not passed(list(checks.values()))


def test_error_rate_counts_every_request_of_the_repeats(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    clean, failing = run(tmp_path, "pr1", [point(windows(2))]), run(tmp_path, "pr2", [point(windows(3))])
    failing.doc["points"][0] = point(windows(3, errors=[6] * 8))  # 0.6% in one repeat, 0.3% over both
    check = by_metric(check_runs([clean, failing], [base], RULES))["error_rate"]
    assert check.outcome == "fail"
    assert check.current == pytest.approx(0.003, rel=0.1)


def unmeasured(measured: list[Window], value: float | None, *metrics: str) -> dict:
    """A point whose summary holds ``value`` (NaN, or null as the results writer now stores NaN) for
    ``metrics`` (a latency percentile or ``throughput_rps``)."""
    result = point(measured)
    for metric in metrics:
        stats = result["summary"]["latency_us"] if metric.startswith("p") else result["summary"]
        stats[metric] = {"value": value, "low": value, "high": value}
    return result


@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "nan (not a finite number)"), (None, "missing")])
@pytest.mark.parametrize("side", ["current", "baseline"])
def test_a_figure_that_is_not_a_number_fails_with_its_reason(tmp_path: Path, side, value, shown) -> None:
    bad, clean = unmeasured(windows(1), value, "p99", "throughput_rps"), point(windows(2))
    base = run(tmp_path, "base", [bad if side == "baseline" else clean])
    current = run(tmp_path, "pr", [bad if side == "current" else clean])
    checks = check_runs(current, base, RULES)
    found = by_metric(checks)
    for metric in ("p99", "throughput"):
        assert found[metric].outcome == "fail"
        assert f"{metric} is {shown} in the {side} run" in found[metric].detail
    assert found["error_rate"].outcome == "pass"
    assert not passed(checks)
    assert "nan" not in table(checks).lower()
    if value is not None:
        assert "not a number" in table(checks)


def test_a_partial_run_fails_the_gate(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1))])
    current = run(tmp_path, "pr", [point(windows(2))])
    current.doc |= {"status": "partial", "error": "digits-mlp torchserve:rest c=2: none was answered"}
    gate = run_gate([current], [base], RULES)
    assert passed(gate.checks)  # the point it measured is fine ...
    assert not gate.passed  # ... but a run that stopped early never passes
    assert gate.failures == [
        "run pr is partial (digits-mlp torchserve:rest c=2: none was answered): a run that did not finish "
        "never passes the gate; re-run it"
    ]
    assert gate.verdict().startswith(
        "gate: FAIL: 3 checks, 0 failed, 0 within noise, 1 run(s) did not finish"
    )
    write_junit(gate, tmp_path / "gate.xml")
    suite = ET.parse(tmp_path / "gate.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("4", "1")
    (failed,) = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed.get("classname") == "run" and "is partial" in failed.find("failure").get("message")


def test_a_partial_baseline_warns_of_the_points_it_lacks(tmp_path: Path) -> None:
    base = run(tmp_path, "base", [point(windows(1), concurrency=1)], loads=(1, 2))
    base.doc |= {"status": "partial", "error": "interrupted"}
    current = run(
        tmp_path, "pr", [point(windows(2), concurrency=1), point(windows(3), concurrency=2)], loads=(1, 2)
    )
    gate = run_gate([current], [base], RULES)
    assert gate.passed and len(gate.checks) == 3  # c=1 only: c=2 has nothing to be compared with
    assert gate.warnings == ["baseline run base is partial (interrupted): the points it lost are not checked"]
    assert [u.describe() for u in gate.unmatched] == [
        "digits-mlp TorchServe REST c=2 has no baseline counterpart: no rule checked it"
    ]
    assert "1 point(s) unchecked (no baseline)" in gate.verdict()
    write_junit(gate, tmp_path / "gate.xml")
    suite = ET.parse(tmp_path / "gate.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "0", "1")
    (skipped,) = [case for case in suite.iter("testcase") if case.find("skipped") is not None]
    assert skipped.get("name") == "c=2 baseline"
    assert "no baseline counterpart" in skipped.find("skipped").get("message")
    assert "baseline run base is partial" in suite.find("system-err").text


def test_a_point_only_one_baseline_repeat_measured_is_unmatched(tmp_path: Path) -> None:
    both = [point(windows(1), concurrency=1), point(windows(1), concurrency=2)]
    base1 = run(tmp_path, "base1", both, loads=(1, 2))
    base2 = run(tmp_path, "base2", [point(windows(2), concurrency=1)], loads=(1, 2))
    current = run(tmp_path, "pr", [point(windows(3), concurrency=c) for c in (1, 2)], loads=(1, 2))
    gate = run_gate([current], [base1, base2], RULES)
    assert [u.label for u in gate.unmatched] == ["c=2"]


# --- `serveoff gate` on results files: bad input is exit 2 and one line ---------------------------------


def save(runs: list[Run]) -> list[str]:
    """Write each run's document as its ``results.json``; the run directories, as the command takes them."""
    for each in runs:
        each.path.mkdir(parents=True, exist_ok=True)
        (each.path / "results.json").write_text(json.dumps(each.doc))
    return [str(each.path) for each in runs]


def gate_cli(args: list[str], capsys, monkeypatch) -> CliResult:
    return run_cli(["gate", *args], capsys, monkeypatch)


def one_error_line(done: CliResult) -> str:
    """The one line a bad input gives, checked to be exactly one ``serveoff: error:`` line and exit 2."""
    lines = done.stderr.strip().splitlines()
    assert done.code == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("serveoff: error: "), done.stderr
    return lines[0]


def corrupt_no_target(doc: dict) -> None:
    del doc["points"][0]["target"]


def corrupt_window_histogram(doc: dict) -> None:
    doc["points"][0]["windows"][1]["histogram"] = "garbage"


MALFORMED = {
    "no target": (corrupt_no_target, "points[0].target is missing"),
    "points a string": (lambda d: d.update(points="c=1"), "points must be a list, not a string ('c=1')"),
    "no manifest": (lambda d: d.pop("manifest"), "manifest is missing"),
    "garbage window histogram": (
        corrupt_window_histogram,
        "points[0].windows[1].histogram is not an HdrHistogram in its base64 encoding",
    ),
    "histogram a number": (
        lambda d: d["points"][0]["windows"][0].update(histogram=7),
        "points[0].windows[0].histogram must be a string, not 7",
    ),
    "negative requests": (
        lambda d: d["points"][0]["windows"][0].update(requests=-3),
        "points[0].windows[0].requests must be a whole number of 0 or more, not -3",
    ),
    "no latency": (
        lambda d: d["points"][0]["summary"].pop("latency_us"),
        "points[0].summary.latency_us is missing",
    ),
    "a point that is a list": (lambda d: d["points"].__setitem__(0, []), "points[0] must be a mapping"),
    "unknown status": (lambda d: d.update(status="done"), "status is 'done'; it must be one of"),
    "summary without windows": (
        lambda d: d["points"][0].update(windows=[]),
        "points[0].windows is empty, but the summary counts answered requests",
    ),
    "plan targets a string": (
        lambda d: d["manifest"]["plan"].update(targets="torchserve:rest"),
        "manifest.plan.targets must be a list",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_results_file_is_one_line_and_exit_2(tmp_path: Path, capsys, monkeypatch, case) -> None:
    corrupt, words = MALFORMED[case]
    base, current = run(tmp_path, "base", [point(windows(1))]), run(tmp_path, "pr", [point(windows(2))])
    corrupt(current.doc)
    (current_dir, base_dir) = save([current, base])
    line = one_error_line(gate_cli([current_dir, "--baseline", base_dir], capsys, monkeypatch))
    assert f"results file {current.path / 'results.json'} is malformed: {words}" in line
    assert "re-measure the run" in line


def test_a_partial_run_fails_the_gate_command(tmp_path: Path, capsys, monkeypatch) -> None:
    base, current = run(tmp_path, "base", [point(windows(1))]), run(tmp_path, "pr", [point(windows(2))])
    current.doc |= {"status": "partial", "error": "interrupted"}
    current_dir, base_dir = save([current, base])
    done = gate_cli([current_dir, "--baseline", base_dir], capsys, monkeypatch)
    assert done.code == 1, done.stdout + done.stderr
    assert "gate: FAIL: run pr is partial (interrupted)" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("gate: FAIL: 3 checks, 0 failed")


def test_a_partial_baseline_is_warned_of_on_the_command_line(tmp_path: Path, capsys, monkeypatch) -> None:
    base = run(tmp_path, "base", [point(windows(1), concurrency=1)], loads=(1, 2))
    base.doc |= {"status": "partial", "error": "interrupted"}
    current = run(tmp_path, "pr", [point(windows(2), concurrency=c) for c in (1, 2)], loads=(1, 2))
    current_dir, base_dir = save([current, base])
    done = gate_cli([current_dir, "--baseline", base_dir], capsys, monkeypatch)
    assert done.code == 0, done.stdout + done.stderr
    warnings = done.stderr.strip().splitlines()
    assert "serveoff: warning: baseline run base is partial (interrupted)" in warnings[0]
    assert warnings[1] == (
        "serveoff: warning: digits-mlp TorchServe REST c=2 has no baseline counterpart: no rule checked it"
    )


def unwritable(tmp_path: Path, case: str) -> Path:
    """A path no file can be written to: under a file, a directory itself, or in a read-only directory."""
    if case == "parent is a file":
        (tmp_path / "file").write_text("")
        return tmp_path / "file" / "out.xml"
    if case == "a directory":
        (tmp_path / "dir").mkdir()
        return tmp_path / "dir"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").write_text("")
    except PermissionError:
        return locked / "out.xml"
    pytest.skip("this user (root) can write into a read-only directory")


@pytest.mark.parametrize("case", ["parent is a file", "a directory", "read-only directory"])
def test_an_unwritable_junit_path_is_one_line_after_the_verdict(tmp_path, capsys, monkeypatch, case) -> None:
    base, current = run(tmp_path, "base", [point(windows(1))]), run(tmp_path, "pr", [point(windows(2))])
    current_dir, base_dir = save([current, base])
    target = unwritable(tmp_path, case)
    done = gate_cli([current_dir, "--baseline", base_dir, "--junit", str(target)], capsys, monkeypatch)
    line = one_error_line(done)
    assert f"cannot write the JUnit XML to {target}: " in line and "pass --junit a file" in line
    assert "gate: PASS: 3 checks" in done.stdout  # the verdict came first and was not lost
    if case == "parent is a file":
        assert f"{tmp_path / 'file'} is a file, not a directory" in line
