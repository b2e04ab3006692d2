"""Claims that articles make about serving PyTorch and TensorFlow models, and what a run says about each.

``claims.yaml`` is the built-in ledger and documents the file format; users add files of their own in
the same format. ``evaluate`` gives every claim a verdict (supported, refuted, inconclusive or not testable
on this run) with the figures it rests on. Figures that came from a test double never settle a claim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import yaml

from serveoff.errors import ServeoffError
from serveoff.loadtest.results import Estimate, PointResult, Summary
from serveoff.report.readiness import PROBE_FORMS, check_probe_predicate, judge_probe
from serveoff.report.runs import PROTOCOL_TITLES, Run, target_title
from serveoff.report.yaml_errors import yaml_problem
from serveoff.serving.targets import BASELINES, SERVERS

BUILTIN_CLAIMS = Path(__file__).with_name("claims.yaml")
STATUSES = ("supported", "refuted", "inconclusive", "not testable")
SYSTEMS = (*SERVERS, *BASELINES)
CAPABILITIES = ("gpu",)
AT = ("all", "heaviest", "lightest")
MAX_QUOTE_WORDS = 12
UNTESTABLE = "not testable on this run: "
TARGET = re.compile(r"[a-z0-9_.-]+:[a-z0-9_.-]+")


@dataclass(frozen=True)
class Claim:
    """One claim: its paraphrase, where it comes from and the predicate a run can settle."""

    id: str
    claim: str  # the paraphrase
    sources: list[dict]  # each {"article": str, "file": str, "quote": str (optional)}
    predicate: dict  # as written, with the defaults (at, by_at_least) filled in
    requires: list[str]  # capabilities, e.g. ["gpu"]; may be empty


@dataclass
class Verdict:
    """What one run says about one claim."""

    claim: Claim
    status: str  # one of STATUSES
    reason: str  # one sentence
    evidence: list[str]  # one line per compared pair of points, with the figures


@dataclass(frozen=True)
class Metric:
    """A figure a predicate can compare: where a point keeps it and how reports show it."""

    title: str
    figure: Callable[[PointResult], Estimate | float | None]  # where a point keeps it
    lower_is_better: bool
    scale: float = 1.0
    unit: str = ""
    has_ci: bool = True


def _in_summary(read: Callable[[Summary], Estimate | None]) -> Callable[[PointResult], Estimate | None]:
    return lambda point: read(point.summary) if point.summary else None


def _latency(name: str) -> Callable[[PointResult], Estimate | None]:
    return _in_summary(lambda summary: summary.latency(name))


METRICS = {
    **{
        p: Metric(f"{p} latency", _latency(p), True, 1e-3, " ms")
        for p in ("p50", "p90", "p95", "p99", "p99.9")
    },
    "throughput": Metric("throughput", _in_summary(lambda s: s.throughput_rps), False, unit=" req/s"),
    "inferences_per_s": Metric(
        "inferences per second", _in_summary(lambda s: s.inferences_per_s), False, unit=" inf/s"
    ),
    "error_rate": Metric("error rate", _in_summary(lambda s: s.error_rate), True, 100.0, "%"),
    "cpu_s_per_1000": Metric(
        "CPU time per 1000 inferences", _in_summary(lambda s: s.cpu_s_per_1000), True, unit=" CPU-s/1000"
    ),
    "peak_rss_mib": Metric("peak memory", lambda p: p.peak_rss_mib, True, unit=" MiB", has_ci=False),
}

# Each predicate form: its required and optional keys.
FORMS = {
    "better": ({"better", "than", "metric"}, {"at", "by_at_least"}),
    "not_worse": ({"not_worse", "than", "metric"}, {"at"}),
    "similar": ({"similar", "metric", "within"}, {"at"}),
    "all_of": ({"all_of"}, set()),
    **PROBE_FORMS,  # over `serveoff probe`'s probes.json (report/readiness.py)
}


# Loading


def load_claims(extra: list[Path] | None = None) -> list[Claim]:
    """The built-in ledger, then the claims in ``extra`` files; ids must be unique across all of them."""
    claims: list[Claim] = []
    origin: dict[str, Path] = {}
    for path in [BUILTIN_CLAIMS, *map(Path, extra or [])]:
        for claim in _read_file(path):
            if claim.id in origin:
                where = "earlier in this file" if origin[claim.id] == path else f"in {origin[claim.id]}"
                _fail(f"{path}: claim {claim.id!r}", f"this id is already used {where}; choose another id")
            origin[claim.id] = path
            claims.append(claim)
    return claims


def _fail(where: str, problem: str) -> NoReturn:
    raise ServeoffError(f"{where}: {problem}")


def _read_file(path: Path) -> list[Claim]:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        _fail(str(path), "no such claims file; check the path")
    except (OSError, UnicodeDecodeError) as err:
        _fail(str(path), f"cannot read the claims file ({err}); check it is a readable YAML text file")
    except yaml.YAMLError as err:
        _fail(str(path), f"{yaml_problem(err)}; fix the YAML syntax")
    if not isinstance(doc, dict) or set(doc) != {"claims"} or not isinstance(doc["claims"], list):
        _fail(str(path), f"expected one top-level key, `claims:`, holding a list; see {BUILTIN_CLAIMS}")
    return [_claim(path, index, entry) for index, entry in enumerate(doc["claims"], 1)]


def _claim(path: Path, index: int, entry: Any) -> Claim:
    where = f"{path}: claim #{index}"
    if not isinstance(entry, dict):
        _fail(where, "is not a mapping; write each claim as `- id: ...` with claim, sources and predicate")
    if not _text(entry.get("id")):
        _fail(where, "needs an `id:` that is a non-empty string (quote ids that look like numbers)")
    where = f"{path}: claim {entry['id']!r}"
    _check_keys(where, "the claim", entry, {"id", "claim", "sources", "predicate"}, {"requires"})
    if not _text(entry["claim"]):
        _fail(where, "`claim:` must be a non-empty string: the article's claim in your own words")
    return Claim(
        id=entry["id"],
        claim=" ".join(entry["claim"].split()),
        sources=_sources(where, entry["sources"]),
        predicate=_predicate(where, entry["predicate"]),
        requires=_requires(where, entry.get("requires", [])),
    )


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_keys(where: str, what: str, mapping: dict, required: set[str], optional: set[str]) -> None:
    allowed = required | optional
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r} in {what}; use only: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(mapping))
    if missing:
        _fail(where, f"{what} has no `{missing[0]}:`; add it")


def _sources(where: str, sources: Any) -> list[dict]:
    if not isinstance(sources, list) or not sources:
        _fail(where, "`sources:` must be a non-empty list of mappings with article, file and optional quote")
    checked = []
    for source in sources:
        if not isinstance(source, dict):
            _fail(where, "each source must be a mapping with article, file and optional quote")
        _check_keys(where, "a source", source, {"article", "file"}, {"quote"})
        for key, value in source.items():
            if not _text(value):
                _fail(where, f"a source's `{key}:` must be a non-empty string")
        words = len(source.get("quote", "").split())
        if words > MAX_QUOTE_WORDS:
            _fail(where, f"a quote has {words} words; quote at most {MAX_QUOTE_WORDS}, paraphrase the rest")
        checked.append({key: value.strip() for key, value in source.items()})
    return checked


def _requires(where: str, requires: Any) -> list[str]:
    if not isinstance(requires, list):
        _fail(where, "`requires:` must be a list of capabilities, e.g. [gpu]")
    for capability in requires:
        if capability not in CAPABILITIES:
            _fail(where, f"unknown capability {capability!r} in `requires:`; use: {', '.join(CAPABILITIES)}")
    return list(requires)


def _predicate(where: str, predicate: Any) -> dict:
    kind = _kind(where, predicate)
    if kind == "all_of":
        parts = predicate["all_of"]
        if not isinstance(parts, list) or not parts:
            _fail(where, "`all_of:` must be a non-empty list of predicates")
        return {"all_of": [_predicate(where, part) for part in parts]}
    if kind in PROBE_FORMS:
        problem = check_probe_predicate(predicate)
        if problem:
            _fail(where, problem)
        return dict(predicate)
    a, b = _compared(where, kind, predicate)
    if a == b:
        _fail(where, f"the predicate compares {a!r} with itself; name two different systems or targets")
    checked = {
        kind: [a, b] if kind == "similar" else a,
        **({} if kind == "similar" else {"than": b}),
        "metric": _metric(where, predicate["metric"]),
        "at": _at(where, predicate.get("at", "all")),
    }
    if kind == "better":
        checked["by_at_least"] = _fraction(where, "by_at_least", predicate.get("by_at_least", 0.0), zero=True)
    if kind == "similar":
        checked["within"] = _fraction(where, "within", predicate["within"], zero=False)
    return checked


def _kind(where: str, predicate: Any) -> str:
    """The predicate's one kind (``better``, ``similar`` ...), its keys checked."""
    if not isinstance(predicate, dict):
        _fail(where, "a predicate must be a mapping, e.g. {better: tfserving, than: torchserve, metric: p50}")
    kinds = [kind for kind in FORMS if kind in predicate]
    if not kinds:
        known = {key for required, optional in FORMS.values() for key in required | optional}
        unknown = [key for key in predicate if key not in known]
        problem = f"unknown predicate key {unknown[0]!r}" if unknown else "no predicate kind"
        _fail(where, f"{problem}; a predicate starts with one of: {', '.join(FORMS)}")
    if len(kinds) > 1:
        _fail(where, f"a predicate has one kind, not {' and '.join(kinds)}; combine them with all_of")
    _check_keys(where, f"the `{kinds[0]}` predicate", predicate, *FORMS[kinds[0]])
    return kinds[0]


def _compared(where: str, kind: str, predicate: dict) -> tuple[str, str]:
    """The two systems or targets a ``better``, ``not_worse`` or ``similar`` predicate names."""
    if kind != "similar":
        return _name(where, predicate[kind]), _name(where, predicate["than"])
    names = predicate["similar"]
    if not isinstance(names, list) or len(names) != 2:
        _fail(where, "`similar:` must list two systems or targets, e.g. [torchserve, tfserving]")
    return _name(where, names[0]), _name(where, names[1])


def _name(where: str, value: Any) -> str:
    if isinstance(value, str) and (value in SYSTEMS or TARGET.fullmatch(value)):
        return value
    _fail(where, f"unknown system or target {value!r}; name one of {', '.join(SYSTEMS)} or system:protocol")


def _metric(where: str, value: Any) -> str:
    if isinstance(value, str) and value in METRICS:
        return value
    _fail(where, f"unknown metric {value!r}; choose from: {', '.join(METRICS)}")


def _at(where: str, value: Any) -> str:
    if isinstance(value, str) and value in AT:
        return value
    _fail(where, f"`at:` is {value!r}; choose from: {', '.join(AT)}")


def _fraction(where: str, key: str, value: Any, zero: bool) -> float:
    """A finite number above zero (or also zero itself, with ``zero``)."""
    if _number(value) and (value > 0 or (zero and value == 0)):
        return float(value)
    _fail(where, f"`{key}:` must be a fraction {'>= 0' if zero else '> 0'}, e.g. 0.2 for 20%; got {value!r}")


# Evaluating


class Interval(NamedTuple):
    """A figure and its 95% confidence interval (all three equal for a figure without one)."""

    value: float
    low: float
    high: float


class _Pair(NamedTuple):
    a: PointResult
    b: PointResult
    ia: Interval
    ib: Interval


class _Result(NamedTuple):
    status: str
    reason: str
    evidence: list[str]


def evaluate(claims: list[Claim], run: Run) -> list[Verdict]:
    """Each claim's verdict on ``run``; a claim is never settled by a test double's figures."""
    return [_verdict(claim, run) for claim in claims]


def _verdict(claim: Claim, run: Run) -> Verdict:
    if "gpu" in claim.requires and not _on_gpu(run):
        return Verdict(claim, "not testable", UNTESTABLE + "needs a GPU; this run was on CPU only", [])
    return Verdict(claim, *_check(claim.predicate, run))


def _on_gpu(run: Run) -> bool:
    gpus = run.manifest.get("machine", {}).get("gpus")
    return isinstance(gpus, list) and bool(gpus)


def _check(predicate: dict, run: Run) -> _Result:
    if "all_of" in predicate:
        return _all_of([_check(part, run) for part in predicate["all_of"]])
    kind = next(kind for kind in FORMS if kind in predicate)
    if kind in PROBE_FORMS:
        return _Result(*judge_probe(predicate, run.path))
    a, b = predicate["similar"] if kind == "similar" else (predicate[kind], predicate["than"])
    for name in (a, b):
        absent = _absent(name, run)
        if absent:
            return absent
    metric = METRICS[predicate["metric"]]
    matched = _select(_matches(a, b, run), predicate["at"])
    a_title, b_title = _title(a, run), _title(b, run)
    if not matched:
        same = "model, phase, load and protocol" if _by_protocol(a, b) else "model, phase and load"
        reason = f"{a_title} and {b_title} never ran at the same {same}"
        return _Result("not testable", UNTESTABLE + reason, [])
    pairs = []
    for pa, pb in matched:
        ia, ib = _interval(pa, metric), _interval(pb, metric)
        if ia is not None and ib is not None:
            pairs.append(_Pair(pa, pb, ia, ib))
    if not pairs:
        reason = f"{metric.title} was not measured at any matched point of {a_title} and {b_title}"
        return _Result("not testable", UNTESTABLE + reason, [])
    if kind == "similar":
        return _similar(predicate, metric, a_title, b_title, pairs)
    return _ordering(kind, predicate, metric, a_title, b_title, pairs)


def _absent(name: str, run: Run) -> _Result | None:
    """Why ``name`` cannot be judged on this run (a test double, or no points), or None."""
    system = name.partition(":")[0]
    if system in run.test_doubles():
        reason = f"no {run.system_title(system)} results (the {system} figures came from a test double)"
        note = f"the {system} points came from {run.source_of(system)}, a test double; none of them was used"
        return _Result("not testable", UNTESTABLE + reason, [note])
    if not any(_names(name, point) for point in run.points):
        return _Result("not testable", UNTESTABLE + f"no results for {_title(name, run)}", [])
    return None


def _names(name: str, point: PointResult) -> bool:
    """Whether ``name`` (a system or a target) covers ``point``."""
    return point.target == name if ":" in name else point.system == name


def _by_protocol(a: str, b: str) -> bool:
    """Two servers (or two baselines) named as systems are compared protocol by protocol."""
    return a in SYSTEMS and b in SYSTEMS and (a in BASELINES) == (b in BASELINES)


def _matches(a: str, b: str, run: Run) -> list[tuple[PointResult, PointResult]]:
    """Pairs of A's and B's points at the same model, phase and load (and protocol, see ``_by_protocol``)."""
    by_protocol = _by_protocol(a, b)

    def key(point: PointResult) -> tuple:
        where = (point.model, point.phase, point.load_key)
        return (*where, point.protocol) if by_protocol else where

    others = [point for point in run.points if _names(b, point)]
    return [(pa, pb) for pa in run.points if _names(a, pa) for pb in others if key(pa) == key(pb)]


def _select(
    pairs: list[tuple[PointResult, PointResult]], at: str
) -> list[tuple[PointResult, PointResult]]:
    """The pairs at the highest or lowest offered load of each model (per phase and kind of loop)."""
    if at == "all":
        return pairs
    pick = max if at == "heaviest" else min

    def group(pair: tuple[PointResult, PointResult]) -> tuple:
        return pair[0].model, pair[0].phase, pair[0].loop

    chosen = []
    for each in dict.fromkeys(map(group, pairs)):
        mine = [pair for pair in pairs if group(pair) == each and pair[0].offered is not None]
        if mine:
            extreme = pick(pair[0].offered for pair in mine)
            chosen += [pair for pair in mine if pair[0].offered == extreme]
    return chosen


def _interval(point: PointResult, metric: Metric) -> Interval | None:
    figure = metric.figure(point)
    if _number(figure):
        return Interval(figure, figure, figure)
    if isinstance(figure, Estimate) and all(map(_number, (figure.value, figure.low, figure.high))):
        return Interval(figure.value, figure.low, figure.high)
    return None


def _number(value: Any) -> bool:
    """A figure a claim can rest on: a finite number (a NaN in the results counts as not measured)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _beats(x: Interval, y: Interval, lower_is_better: bool, margin: float, strict: bool) -> bool:
    """Whether x's whole interval is better than y's, by ``margin`` (strictly, or allowing a tie)."""
    below, above = (x.high * (1 + margin), y.low) if lower_is_better else (y.high * (1 + margin), x.low)
    return below < above if strict else below <= above


def _ordering(kind: str, predicate: dict, metric: Metric, a: str, b: str, pairs: list[_Pair]) -> _Result:
    """``better`` and ``not_worse``: A's interval against B's at every pair (``a``, ``b``: their titles)."""
    margin = predicate.get("by_at_least", 0.0)
    strict = kind == "better"
    word = "better" if strict else "no worse"
    wins_a = wins_b = 0
    evidence = []
    for pair in pairs:
        a_wins = _beats(pair.ia, pair.ib, metric.lower_is_better, margin, strict)
        b_wins = _beats(pair.ib, pair.ia, metric.lower_is_better, 0.0, True)
        wins_a, wins_b = wins_a + a_wins, wins_b + b_wins
        outcome = "confidence intervals overlap"
        if a_wins:
            outcome = f"{target_title(pair.a)} {word}"
        elif b_wins:
            outcome = f"{target_title(pair.b)} better"
        evidence.append(f"{_figures(predicate['metric'], metric, pair)}: {outcome}")
    at, n = predicate["at"], len(pairs)
    adjective = "lower" if metric.lower_is_better else "higher"
    if wins_a == n:
        if not strict:
            reason = f"{a}'s {metric.title} was no worse than {b}'s {_every(at, n)}"
            return _Result("supported", reason, evidence)
        lead = f" by at least {_percent(margin)}" if margin else ""
        reason = f"{a} had {adjective} {metric.title} than {b}{lead} {_every(at, n)}"
        return _Result("supported", reason + _apart(metric), evidence)
    if wins_b and not wins_a:
        reason = f"{b} had {adjective} {metric.title} than {a} {_some(wins_b, at, n)}"
        return _Result("refuted", reason + _apart(metric), evidence)
    if wins_a or wins_b:
        reason = f"mixed: {a} {word} {_some(wins_a, at, n)}, {b} better at {wins_b}"
        return _Result("inconclusive", reason, evidence)
    short = f" (or {a}'s lead is under {_percent(margin)})" if margin else ""
    reason = f"the confidence intervals of {a} and {b} overlap{short} in {metric.title}"
    return _Result("inconclusive", f"{reason} {_every(at, n)}", evidence)


def _similar(predicate: dict, metric: Metric, a: str, b: str, pairs: list[_Pair]) -> _Result:
    # a and b: the two sides as the reasons name them (their titles)
    """``similar``: the ratio A/B, bounded by the intervals, against the band 1/(1+within) .. 1+within."""
    within = predicate["within"]
    band = (1 / (1 + within), 1 + within)
    inside = outside = 0
    evidence = []
    for pair in pairs:
        lo, hi = _ratio(pair.ia, pair.ib)
        is_inside, is_outside = band[0] <= lo and hi <= band[1], hi < band[0] or lo > band[1]
        inside, outside = inside + is_inside, outside + is_outside
        verdict = "within" if is_inside else "beyond" if is_outside else "cannot tell if within"
        ratio = f"ratio {_num(lo)} to {_num(hi)}, {verdict} {_percent(within)}"
        evidence.append(f"{_figures(predicate['metric'], metric, pair)}: {ratio}")
    at, n, pct = predicate["at"], len(pairs), _percent(within)
    both = f"{a} and {b}"
    if inside == n:
        reason = f"{both} had {metric.title} within {pct} of each other {_every(at, n)}"
        return _Result("supported", reason, evidence)
    if outside and not inside:
        reason = f"{both} differed by more than {pct} in {metric.title} {_some(outside, at, n)}"
        return _Result("refuted", reason, evidence)
    if inside or outside:
        reason = (
            f"mixed: {both} were within {pct} in {metric.title} {_some(inside, at, n)}, beyond at {outside}"
        )
        return _Result("inconclusive", reason, evidence)
    reason = f"the confidence intervals are too wide to tell if {both} are within {pct} in {metric.title}"
    return _Result("inconclusive", f"{reason} {_every(at, n)}", evidence)


def _ratio(x: Interval, y: Interval) -> tuple[float, float]:
    """The bounds of x/y over both intervals (a zero y gives 1 against a zero x, else infinity)."""
    if y.high <= 0:
        return (1.0, 1.0) if x.high <= 0 else (math.inf, math.inf)
    return x.low / y.high, x.high / y.low if y.low > 0 else math.inf


def _all_of(parts: list[_Result]) -> _Result:
    evidence = list(dict.fromkeys(line for part in parts for line in part.evidence))
    statuses = [part.status for part in parts]

    def reasons(status: str | None = None) -> str:
        chosen = [p.reason.removeprefix(UNTESTABLE) for p in parts if status in (None, p.status)]
        return "; ".join(dict.fromkeys(chosen))

    if all(status == "supported" for status in statuses):
        return _Result("supported", f"every part holds: {reasons()}", evidence)
    if "refuted" in statuses:
        return _Result("refuted", reasons("refuted"), evidence)
    if "not testable" in statuses:
        return _Result("not testable", UNTESTABLE + reasons("not testable"), evidence)
    unsettled = "; ".join(p.reason for p in parts if p.status != "supported")
    return _Result("inconclusive", f"not every part is settled: {unsettled}", evidence)


# Wording


def _title(name: str, run: Run) -> str:
    """How reasons name a system or target: ``TF Serving``, ``TorchServe REST``, ``torch:compiled``."""
    system, _, protocol = name.partition(":")
    if not protocol:
        return run.system_title(system)
    if system in SYSTEMS and protocol in PROTOCOL_TITLES:
        return f"{run.system_title(system)} {PROTOCOL_TITLES[protocol]}".strip()
    return name


def _every(at: str, n: int) -> str:
    """``at all 3 matched points``, ``at the one matched point (the heaviest load of each model)``."""
    points = "the one matched point" if n == 1 else f"all {n} matched points"
    return f"at {points}{_load(at)}"


def _some(k: int, at: str, n: int) -> str:
    """``at 2 of 3 matched points``."""
    return f"at {k} of {n} matched point{'s' if n != 1 else ''}{_load(at)}"


def _load(at: str) -> str:
    return "" if at == "all" else f" (the {at} load of each model)"


def _apart(metric: Metric) -> str:
    return ", with no overlap of the 95% confidence intervals" if metric.has_ci else ""


def _figures(name: str, metric: Metric, pair: _Pair) -> str:
    """E.g. ``digits-mlp c=4 p50: TF Serving REST 2.10 ms [2.00, 2.20] vs TorchServe REST 4.08 ms [...]``."""
    point = pair.a
    phase = "" if point.phase == "sweep" else f" ({point.phase})"
    a = f"{target_title(pair.a)} {_figure(metric, pair.ia)}"
    b = f"{target_title(pair.b)} {_figure(metric, pair.ib)}"
    return f"{point.model} {point.label}{phase} {name}: {a} vs {b}"


def _figure(metric: Metric, interval: Interval) -> str:
    value, low, high = (_num(x * metric.scale) for x in interval)
    return f"{value}{metric.unit} [{low}, {high}]" if metric.has_ci else f"{value}{metric.unit}"


def _num(x: float) -> str:
    """Three significant figures, whole numbers from 100 up."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.0f}" if abs(x) >= 99.95 else f"{x:#.3g}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"
