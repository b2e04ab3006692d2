"""The CI performance gate on synthetic runs: noise-aware rules, matching, JUnit output and rules files."""

from __future__ import annotations

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
    GateRules,
    Rule,
    check_runs,
    differences,
    load_rules,
    passed,
    table,
    write_junit,
)
from serveoff.report.runs import Run

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
        ([4] * 8, "fail", "significantly above 0.1%"),  # 0.4% of the requests in every window
        ([16] + [0] * 7, "noisy", "within noise"),  # 0.2% overall, all in one window
    ],
)
def test_error_rate_ceiling_on_the_current_run(
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
    write_junit(checks, out, name="perf")
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
