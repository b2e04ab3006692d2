"""The CI performance gate: compare a run with a baseline run of the same plan, noise included.

Every rule is checked on every load point both runs measured. A relative change (latency, throughput) only
fails the gate when it is significant: the bootstrap interval of current / baseline (windows resampled in
each run independently) lies entirely beyond the allowance. A point estimate beyond it whose interval still
reaches back is ``noisy``: shown, but it passes. The error-rate rule is an absolute limit on the share of
the current run's requests that failed, noise or not. A figure that is not a finite number fails, and so
does a run that did not finish.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import yaml

from serveoff.errors import ServeoffError
from serveoff.loadtest.histograms import PERCENTILES
from serveoff.loadtest.results import PointResult
from serveoff.loadtest.stats import Window, bootstrap, bounds
from serveoff.report.files import write_atomically
from serveoff.report.runs import Run, point_key, target_title
from serveoff.report.yaml_errors import yaml_problem
from serveoff.serving.base import is_test_double

DEFAULT_RULES = Path(__file__).with_name("gates.yaml")
LATENCY = tuple(PERCENTILES)
THROUGHPUT, ERROR_RATE = "throughput", "error_rate"
METRICS = (*LATENCY, THROUGHPUT, ERROR_RATE)
LIMIT_OF = {**dict.fromkeys(LATENCY, "max_increase"), THROUGHPUT: "max_decrease", ERROR_RATE: "max"}
STATISTIC = {**{m: m for m in LATENCY}, THROUGHPUT: "throughput_rps", ERROR_RATE: "error_rate"}
FORMAT_HINT = "e.g. `rules: [{metric: p99, max_increase: 0.10}]`"
OUTCOME_TITLES = {"pass": "PASS", "fail": "FAIL", "noisy": "noisy"}
DEFAULT_ERROR_LIMIT = 0.001  # the built-in error-rate rule, for reports of rules without one


@dataclass(frozen=True)
class Rule:
    """One limit on one metric: a relative change against the baseline, or an absolute error-rate ceiling."""

    metric: str  # "p50" "p90" "p95" "p99" "p99.9" | "throughput" | "error_rate"
    max_increase: float | None = None  # latency: allowed relative increase, e.g. 0.10
    max_decrease: float | None = None  # throughput: allowed relative drop, e.g. 0.05
    max: float | None = None  # error_rate: absolute ceiling on the current run, e.g. 0.001

    def describe(self) -> str:
        """The rule in words, e.g. ``p99 +10% at most``."""
        if self.metric == THROUGHPUT:
            return f"throughput -{_percent(self.max_decrease)} at most"
        if self.metric == ERROR_RATE:
            return f"error rate {_percent(self.max)} at most"
        return f"{self.metric} +{_percent(self.max_increase)} at most"


@dataclass(frozen=True)
class GateRules:
    """The rules and the confidence of the intervals they are judged with."""

    rules: list[Rule]
    confidence: float = 0.95
    source: str = "built-in"  # the file they came from


@dataclass
class Check:
    """One rule judged on one load point."""

    model: str
    target: str
    title: str  # how people read the target, naming a test double as one (see ``target_title``)
    label: str
    phase: str
    rule: Rule
    baseline: float | None  # the metric's value in the baseline run
    current: float | None
    ratio: float | None  # current / baseline (None for error_rate's absolute rule)
    low: float | None  # the ratio's (or error rate's) bootstrap interval
    high: float | None
    outcome: str  # "pass" | "fail" | "noisy"
    detail: str  # one line saying why


# --- rules files -------------------------------------------------------------------------------------


def load_rules(path: Path | None = None) -> GateRules:
    """The gate rules in ``path`` (default: ``report/gates.yaml``); one clear line when malformed."""
    path = path or DEFAULT_RULES
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ServeoffError(
            f"gate rules file {path} does not exist; pass an existing file to --rules"
        ) from None
    except OSError as err:
        raise ServeoffError(f"cannot read gate rules file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ServeoffError(f"gate rules file {path}: {yaml_problem(err)}; fix its syntax") from None
    if not isinstance(doc, dict):
        raise ServeoffError(f"gate rules file {path} must be a mapping with a `rules:` list, {FORMAT_HINT}")
    _no_unknown_keys(doc, {"confidence", "rules"}, f"gate rules file {path}")
    confidence = doc.get("confidence", 0.95)
    if not _is_number(confidence) or not 0.5 < confidence < 1:
        raise ServeoffError(
            f"gate rules file {path}: confidence must be a number between 0.5 and 1 (exclusive), "
            f"got {confidence!r}; e.g. `confidence: 0.95`"
        )
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ServeoffError(f"gate rules file {path} needs a non-empty `rules:` list, {FORMAT_HINT}")
    parsed = [_rule(entry, f"gate rules file {path}, rule {n}") for n, entry in enumerate(rules, 1)]
    return GateRules(parsed, float(confidence), str(path))


def _rule(entry: object, where: str) -> Rule:
    """One rule entry, validated."""
    if not isinstance(entry, dict):
        raise ServeoffError(f"{where} must be a mapping, {FORMAT_HINT}")
    _no_unknown_keys(entry, {"metric", *LIMIT_OF.values()}, where)
    metric = entry.get("metric")
    if metric not in METRICS:
        raise ServeoffError(f"{where}: unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    kind = LIMIT_OF[metric]
    wrong = sorted(k for k in entry if k not in ("metric", kind))
    if wrong:
        raise ServeoffError(f"{where}: {metric} takes `{kind}`, not `{wrong[0]}`; write `{kind}: <limit>`")
    if kind not in entry:
        raise ServeoffError(f"{where}: {metric} needs a limit; add `{kind}: <limit>`")
    limit = entry[kind]
    ceiling = math.inf if kind == "max_increase" else 1.0
    if not _is_number(limit) or not 0 <= limit <= ceiling:
        bound = "0 or more" if ceiling == math.inf else "between 0 and 1"
        raise ServeoffError(
            f"{where}: {kind} must be a number {bound} (a fraction: 0.10 is 10%), got {limit!r}"
        )
    return Rule(metric, **{kind: float(limit)})


def _no_unknown_keys(doc: dict, known: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise ServeoffError(f"{where}: unknown key {unknown[0]!r}; the keys are: {', '.join(sorted(known))}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def error_limit(rules: GateRules) -> float:
    """The share of requests the rules allow to fail (the strictest; the built-in 0.1% when they set none)."""
    limits = [r.max for r in rules.rules if r.metric == ERROR_RATE and r.max is not None]
    return min(limits, default=DEFAULT_ERROR_LIMIT)


# --- comparing runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unmatched:
    """A point the current run measured and the baseline did not: no rule checks it."""

    model: str
    target: str
    title: str
    label: str
    phase: str

    def describe(self) -> str:
        """``digits-mlp TorchServe REST c=8 has no baseline counterpart ...``."""
        load = self.label if self.phase == "sweep" else f"{self.label} ({self.phase})"
        return f"{self.model} {self.title} {load} has no baseline counterpart: no rule checked it"


@dataclass
class Gate:
    """The gate's verdict: every check, what fails the whole run, and what a reader must be warned of."""

    checks: list[Check]
    failures: list[str] = field(default_factory=list)  # run-level: a current run that did not finish
    warnings: list[str] = field(default_factory=list)  # setup differences, a baseline that did not finish
    unmatched: list[Unmatched] = field(default_factory=list)  # points of the run no baseline point matches
    compared: str = ""  # ``new1+new2 against old1+old2``
    rules: str = ""  # where the rules came from

    @property
    def passed(self) -> bool:
        return not self.failures and passed(self.checks)

    def verdict(self) -> str:
        """``gate: FAIL: 6 checks, 2 failed, 1 within noise (pr against main; rules: built-in)``."""
        failed = sum(c.outcome == "fail" for c in self.checks)
        noisy = sum(c.outcome == "noisy" for c in self.checks)
        extra = f", {len(self.failures)} run(s) did not finish" if self.failures else ""
        extra += f", {len(self.unmatched)} point(s) unchecked (no baseline)" if self.unmatched else ""
        return (
            f"gate: {'PASS' if self.passed else 'FAIL'}: {len(self.checks)} checks, {failed} failed, "
            f"{noisy} within noise{extra} ({self.compared}; rules: {self.rules})"
        )


def run_gate(current: list[Run], baseline: list[Run], rules: GateRules, seed: int = 0) -> Gate:
    """The gate on ``current`` (repeats of one run) against ``baseline``: checks, failures and warnings.

    A current run that is not ``complete`` fails the gate (its error says why it stopped); a baseline that
    is not warns, and so does every point of the run the baseline has no steady counterpart of, as nothing
    checks it.
    """
    checks = check_runs(current, baseline, rules, seed)
    failures = [
        f"run {run.run_id} is {run.doc['status']} ({run.doc.get('error') or 'it never finished'}): a run "
        "that did not finish never passes the gate; re-run it"
        for run in current
        if run.doc["status"] != "complete"
    ]
    warnings = [
        f"baseline run {run.run_id} is {run.doc['status']} ({run.doc.get('error') or 'it never finished'}): "
        "the points it lost are not checked"
        for run in baseline
        if run.doc["status"] != "complete"
    ]
    warnings += differences(current[0], baseline[0])
    compared = f"{_ids(current)} against {_ids(baseline)}"
    return Gate(checks, failures, warnings, unmatched_points(current, baseline), compared, rules.source)


def unmatched_points(current: list[Run], baseline: list[Run]) -> list[Unmatched]:
    """Points the current runs measured that not every baseline repeat measured: they go unchecked."""
    steady = _steady_keys(baseline)
    seen: dict[tuple, Unmatched] = {}
    for run in current:
        for p in run.points:
            if point_key(p) not in steady:
                seen.setdefault(point_key(p), Unmatched(p.model, p.target, target_title(p), p.label, p.phase))
    return list(seen.values())


def _steady_keys(baselines: list[Run]) -> set[tuple]:
    """The points every baseline repeat answered: the ones a current point can be compared with."""
    keys = [{point_key(p) for p in run.points} for run in baselines]
    return set.intersection(*keys) if keys else set()


def check_runs(
    current: Run | list[Run], baseline: Run | list[Run], rules: GateRules, seed: int = 0
) -> list[Check]:
    """Every rule judged on every load point both sides measured (and on each point ``current`` lost).

    Each side may be several runs of the same plan (repeats): their intervals then come from a bootstrap
    over runs and, within each, over windows, so run-to-run drift is part of the noise.
    """
    currents, baselines = _runs(current), _runs(baseline)
    for other in [*currents[1:], *baselines]:
        _same_pairs(currents[0], other)
    measured = [{point_key(p): p for p in run.points} for run in currents]
    listed = {point_key(p) for run in currents for p in run.all_points}
    before = [{point_key(p): p for p in run.points} for run in baselines]
    checks: list[Check] = []
    compared = 0
    for key, base in before[0].items():
        bases = [each.get(key) for each in before]
        if None in bases:
            continue  # not every baseline repeat answered it: nothing steady to compare with
        points = [each.get(key) for each in measured]
        if all(p is not None for p in points):
            compared += 1
            windows = [p.decoded_windows() for p in points]
            base_windows = [b.decoded_windows() for b in bases]
            sides = Side(points, windows), Side(bases, base_windows)
            checks += [_judge(rule, *sides, rules.confidence, seed) for rule in rules.rules]
        elif key in listed or _planned(currents[0], base):
            compared += 1
            checks += [_lost(rule, base) for rule in rules.rules]
    if not compared:
        raise ServeoffError(
            f"no load point of run {_ids(currents)} matches one of the baseline run {_ids(baselines)}; "
            "gate runs of the same plan"
        )
    return checks


@dataclass
class Side:
    """One load point as measured by each repeat of one side: the points and their windows."""

    points: list[PointResult]
    windows: list[list[Window]]

    def value(self, metric: str) -> float | None:
        """The metric's estimate: its mean over the repeats."""
        values = [_value(p, metric) for p in self.points]
        return None if None in values else float(np.mean(values))

    def samples(self, statistic: str, seed: int) -> np.ndarray:
        """Bootstrap samples: repeats drawn with replacement, and windows within each (one run: windows)."""
        per_run = np.stack([bootstrap(w, statistic, seed + 7919 * i) for i, w in enumerate(self.windows)])
        if len(per_run) == 1:
            return per_run[0]
        picks = np.random.default_rng(seed).integers(0, len(per_run), size=(per_run.shape[1], len(per_run)))
        with np.errstate(invalid="ignore"):
            return np.mean(per_run[picks, np.arange(per_run.shape[1])[:, None]], axis=1)


def _runs(runs: Run | list[Run]) -> list[Run]:
    return runs if isinstance(runs, list) else [runs]


def _ids(runs: list[Run]) -> str:
    return "+".join(run.run_id for run in runs)


def passed(checks: list[Check]) -> bool:
    """Whether the gate passes: no check failed (noisy ones pass)."""
    return all(c.outcome != "fail" for c in checks)


def differences(current: Run, baseline: Run) -> list[str]:
    """How the two runs' setups differ where that makes the comparison suspect (warnings, not errors)."""
    lines = []
    fields = {
        "fairness.config": lambda m: m.get("fairness", {}).get("config"),
        "machine.cpu_model": lambda m: m.get("machine", {}).get("cpu_model"),
    }
    for name, get in fields.items():
        ours, theirs = get(current.manifest), get(baseline.manifest)
        if ours != theirs:
            lines.append(f"{name} differs: baseline {_compact(theirs)}, current {_compact(ours)}")
    ours, theirs = current.manifest.get("plan", {}), baseline.manifest.get("plan", {})
    for key in sorted((set(ours) | set(theirs)) - {"seed"}):
        if ours.get(key) != theirs.get(key):
            lines.append(
                f"plan.{key} differs: baseline {_compact(theirs.get(key))}, current {_compact(ours.get(key))}"
            )
    return lines


def _same_pairs(current: Run, baseline: Run) -> None:
    """One clear line unless both runs cover the same (model, target) pairs."""
    ours, theirs = _pairs(current), _pairs(baseline)
    if ours != theirs:
        raise ServeoffError(
            f"the baseline run {baseline.run_id} measured {_describe_pairs(theirs)} but run {current.run_id} "
            f"measured {_describe_pairs(ours)}; gate runs of the same plan"
        )


def _pairs(run: Run) -> set[tuple[str, str]]:
    """The (model, target) pairs a run planned or has points of (measured or not)."""
    plan = run.manifest.get("plan", {})
    planned = {(m, t) for m in plan.get("models", []) for t in plan.get("targets", [])}
    return planned | {(p.model, p.target) for p in run.all_points}


def _describe_pairs(pairs: set[tuple[str, str]]) -> str:
    """``targets a, b of digits-mlp and c of resnet50``."""
    models = sorted({m for m, _ in pairs})
    parts = [", ".join(sorted(t for m2, t in pairs if m2 == m)) + f" of {m}" for m in models]
    return "targets " + " and ".join(parts) if parts else "nothing"


def _planned(run: Run, point: PointResult) -> bool:
    """Whether ``run``'s plan includes this sweep point (so a missing one was lost, not left out)."""
    plan = run.manifest.get("plan", {})
    return (
        point.phase == "sweep"
        and point.model in plan.get("models", [])
        and point.target in plan.get("targets", [])
        and point.load in plan.get("points", [])
    )


def _lost(rule: Rule, base: PointResult) -> Check:
    """A point the baseline measured and the current run did not: a failure, never a silent pass."""
    lost = "no measurement in current run"
    return _check([base], rule, _Figures(_value(base, rule.metric), None), "fail", lost)


def _judge(rule: Rule, current: Side, baseline: Side, confidence: float, seed: int) -> Check:
    """One rule on one load point, measured by both sides."""
    base = baseline.points[0]
    if rule.metric == ERROR_RATE:
        return _judge_errors(rule, current, baseline, confidence, seed)
    now, before = current.value(rule.metric), baseline.value(rule.metric)
    missing = _not_comparable(rule.metric, now, before)
    if missing:
        return _check([base, *current.points], rule, _Figures(before, now), "fail", missing)
    statistic = STATISTIC[rule.metric]
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = current.samples(statistic, seed) / baseline.samples(statistic, seed + 1)
    ratio = now / before
    low, high = bounds(ratio, samples, confidence)
    if rule.metric == THROUGHPUT:
        floor = 1 - rule.max_decrease
        outcome = "fail" if high < floor else "noisy" if ratio < floor else "pass"
    else:
        ceiling = 1 + rule.max_increase
        outcome = "fail" if low > ceiling else "noisy" if ratio > ceiling else "pass"
    detail = _detail(rule, outcome, ratio, low, high, confidence)
    return _check([base, *current.points], rule, _Figures(before, now, ratio, low, high), outcome, detail)


def _not_comparable(metric: str, now: float | None, before: float | None) -> str | None:
    """Why a relative rule cannot judge these figures (one is missing, not finite, or the baseline's 0)."""
    for side, value in (("current", now), ("baseline", before)):
        if value is None or not math.isfinite(value):
            shown = "missing" if value is None else f"{value} (not a finite number)"
            return f"{metric} is {shown} in the {side} run: a figure that was not measured cannot pass"
    if before == 0:
        return f"{metric} is 0 in the baseline run: no relative change can be judged against it"
    return None


def _judge_errors(rule: Rule, current: Side, baseline: Side, confidence: float, seed: int) -> Check:
    """The error-rate limit: the share of every request of the point (all repeats) that failed, noise or not.

    The bootstrap interval is shown for information; it never excuses a rate above the limit.
    """
    base = baseline.points[0]
    windows = [w for each in current.windows for w in each]
    failed = sum(w.failed for w in windows)
    attempted = failed + sum(w.requests for w in windows)
    rate, before = failed / attempted, baseline.value(ERROR_RATE)
    if not failed:
        figures = _Figures(before, rate, None, 0.0, 0.0)
        return _check([base, *current.points], rule, figures, "pass", "no request failed")
    low, high = bounds(rate, current.samples("error_rate", seed), confidence)
    share = f"error rate {_percent(rate)} ({failed:,} of {attempted:,} requests failed)"
    if rate > rule.max:
        outcome, detail = "fail", f"{share} is above the {_percent(rule.max)} limit"
    else:
        outcome, detail = "pass", f"{share} is within the {_percent(rule.max)} limit"
    interval = f" ({_percent(confidence)} interval {_percent(low)} to {_percent(high)})"
    figures = _Figures(before, rate, None, low, high)
    return _check([base, *current.points], rule, figures, outcome, detail + interval)


def _detail(rule: Rule, outcome: str, ratio: float, low: float, high: float, confidence: float) -> str:
    """Why a relative rule passed, failed or was noisy, in one line."""
    change = (
        f"{rule.metric} {_signed(ratio)} ({_percent(confidence)} interval {_signed(low)} to {_signed(high)})"
    )
    allowed = rule.describe()
    if outcome == "fail":
        return f"{change}: significantly beyond {allowed}"
    if outcome == "noisy":
        return f"{change}: beyond {allowed}, but within noise"
    return f"{change}: within {allowed}"


class _Figures(NamedTuple):
    """What a check shows: the metric on both sides, and the ratio (or error rate) with its interval."""

    baseline: float | None
    current: float | None
    ratio: float | None = None  # current / baseline (None for error_rate's absolute rule)
    low: float | None = None
    high: float | None = None


def _check(points: list[PointResult], rule: Rule, figures: _Figures, outcome: str, detail: str) -> Check:
    """A check on the load point of ``points`` (the baseline's first); a test double on either side shows."""
    point = points[0]
    doubles = [target_title(p) for p in points if is_test_double(p.source)]
    title = doubles[0] if doubles else target_title(point)
    return Check(point.model, point.target, title, point.label, point.phase, rule, *figures, outcome, detail)


def _value(point: PointResult, metric: str) -> float | None:
    """The metric's point estimate in a point's summary (µs for latency)."""
    if point.summary is None:
        return None
    if metric in LATENCY:
        return point.summary.latency(metric).value
    return getattr(point.summary, STATISTIC[metric]).value


# --- output ------------------------------------------------------------------------------------------

COLUMNS = ("model", "target", "load", "metric", "baseline", "current", "change", "rule", "outcome")


def table(checks: list[Check]) -> str:
    """The checks as a fixed-width text table."""
    rows = [COLUMNS, *(tuple(cells(c).values()) for c in checks)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def cells(check: Check) -> dict[str, str]:
    """One check as people read it, by column: what the table and the report show."""
    metric = check.rule.metric
    row = (
        check.model,
        check.title,
        _load(check),
        metric,
        _show(metric, check.baseline),
        _show(metric, check.current),
        _change(check),
        check.rule.describe(),
        OUTCOME_TITLES[check.outcome],
    )
    return dict(zip(COLUMNS, row, strict=True))


def _load(check: Check) -> str:
    """The load point's label, with its phase unless it is the sweep: ``c=8``, ``r=160/s (search)``."""
    return check.label if check.phase == "sweep" else f"{check.label} ({check.phase})"


def _show(metric: str, value: float | None) -> str:
    """A metric's value for people: latency in ms (3 significant digits), throughput in req/s."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "not a number"
    if metric == THROUGHPUT:
        return f"{value:.1f} req/s"
    if metric == ERROR_RATE:
        return _percent(value)
    ms = value / 1000
    return f"{ms:,.0f} ms" if ms >= 1000 else f"{ms:#.3g}".rstrip(".") + " ms"


def _change(check: Check) -> str:
    """``+31.2% [+24.0, +40.1]`` (relative rules) or the error rate's interval ``[0%, 0.12%]``."""
    if check.low is None or check.high is None or not all(map(math.isfinite, (check.low, check.high))):
        return "-"
    if check.ratio is None:
        return f"[{_percent(check.low)}, {_percent(check.high)}]"
    return f"{_signed(check.ratio)} [{_signed(check.low, '')}, {_signed(check.high, '')}]"


def write_junit(gate: Gate, path: Path, name: str = "serveoff gate") -> None:
    """The gate as a JUnit XML test suite, written atomically; one clear line when it cannot be written.

    One test case per check; a run that did not finish is a failed case of its own, a point without a
    baseline counterpart a skipped one, and the warnings go to the suite's ``system-err``.
    """
    checks = gate.checks
    failures = sum(c.outcome == "fail" for c in checks) + len(gate.failures)
    suite = ET.Element(
        "testsuite", name=name, tests=str(len(checks) + len(gate.failures) + len(gate.unmatched)),
        failures=str(failures), errors="0", skipped=str(len(gate.unmatched)),
    )  # fmt: skip
    for failure in gate.failures:
        case = ET.SubElement(suite, "testcase", classname="run", name="finished")
        ET.SubElement(case, "failure", message=failure).text = failure
    for check in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{check.model}.{check.target}",
            name=f"{_load(check)} {check.rule.metric}",
        )
        if check.outcome == "fail":
            ET.SubElement(case, "failure", message=check.detail).text = check.detail
        elif check.outcome == "noisy":
            ET.SubElement(case, "system-out").text = check.detail
    for point in gate.unmatched:
        case = ET.SubElement(
            suite, "testcase", classname=f"{point.model}.{point.target}", name=f"{point.label} baseline"
        )
        ET.SubElement(case, "skipped", message=point.describe())
    if gate.warnings:
        ET.SubElement(suite, "system-err").text = "\n".join(gate.warnings)
    tree = ET.ElementTree(suite)
    write_atomically(path, lambda tmp: tree.write(tmp, encoding="utf-8", xml_declaration=True),
                     "the JUnit XML", "--junit")  # fmt: skip


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.3g}%"


def _signed(ratio: float, unit: str = "%") -> str:
    """A ratio as a signed change: 1.312 -> ``+31.2%``."""
    return f"{(ratio - 1) * 100:+.1f}{unit}"


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
