"""The words of a report: a short verdict per model, the fairness box and the notes a reader must see."""

from __future__ import annotations

from itertools import combinations

from serveoff.loadtest.results import Estimate, PointResult
from serveoff.report.format import finite, ms, percent, significant, with_interval
from serveoff.report.runs import Run, target_title

SUMMARY_FIGURES = ("throughput_rps", "inferences_per_s", "error_rate", "cpu_s_per_1000")


def _throughput(point: PointResult) -> float:
    return point.summary.throughput_rps.value


def left_out(point: PointResult, error_limit: float) -> str | None:
    """Why a point cannot stand for its target's capacity or latency, or None when it can.

    A point that broke the error-rate rule measured a failing server; one flagged overloaded measured a
    queue; one without a finite throughput measured nothing usable.
    """
    rate = point.summary.error_rate.value
    if not finite(rate):
        return "its error rate is missing"
    if rate > error_limit:
        return f"{percent(rate)} of requests failed, above the {percent(error_limit)} limit"
    if point.flags.overloaded:
        return f"overloaded: {point.flags.overload or 'the offered load was not served'}"
    if not finite(_throughput(point)):
        return "its throughput is missing"
    return None


def model_verdict(run: Run, model: str, error_limit: float) -> list[str]:
    """A few sentences on one model: each target's capacity and latency, server against server, tax.

    Points that ``left_out`` rejects are not quoted as capacity or latency; the line says which they are.
    """
    points = [p for p in run.points if p.model == model]
    lines = []
    for target in run.targets:
        ours = [p for p in points if p.target == target]
        if ours:
            lines.append(_capacity(ours, error_limit))
    lines += _server_against_server(run, points)
    lines += _tax_at_lightest_load(run, model)
    doubles = sorted(run.test_doubles())
    if doubles:
        lines.append(
            f"The {', '.join(doubles)} figures come from serveoff's test double; they check the harness and "
            "are never compared with other servers or used for claims."
        )
    return lines


def _capacity(points: list[PointResult], error_limit: float) -> str:
    """One target's capacity and low-load latency from its usable points, naming the ones left out."""
    usable = [p for p in points if left_out(p, error_limit) is None]
    skipped = "; ".join(f"{p.label}: {left_out(p, error_limit)}" for p in points if p not in usable)
    title = target_title(points[0])
    if not usable:
        return f"{title}: no capacity or latency figure, as every point is left out ({skipped})."
    best = max(usable, key=_throughput)
    light = min(usable, key=lambda p: p.offered)
    latency = light.summary
    line = (
        f"{title}: up to {with_interval(best.summary.throughput_rps)} requests/s "
        f"({best.label}); at {light.label} p50 {ms(latency.latency('p50').value)}, "
        f"p99 {ms(latency.latency('p99').value)}."
    )
    return line + (f" Left out of these figures: {skipped}." if skipped else "")


def _server_against_server(run: Run, points: list[PointResult]) -> list[str]:
    """Per pair of genuinely measured servers and protocol: who is ahead where the CIs do not overlap."""
    servers = [s for s in run.manifest.get("servers", {}) if run.genuine(s)]
    lines = []
    for a, b in combinations(servers, 2):
        for protocol in ("rest", "grpc"):
            pairs = _pairs(points, a, b, protocol)
            if not pairs:
                continue
            faster = {a: 0, b: 0}
            for pa, pb in pairs:
                la, lb = pa.summary.latency("p50"), pb.summary.latency("p50")
                if la.high < lb.low:
                    faster[a] += 1
                elif lb.high < la.low:
                    faster[b] += 1
            wire = protocol.upper() if protocol == "rest" else "gRPC"
            lines.append(
                f"{wire}: lower p50 for {run.system_title(a)} at "
                f"{faster[a]} of {len(pairs)} load points, for {run.system_title(b)} at {faster[b]}; "
                "the 95% intervals overlap at the rest."
            )
    return lines


def _pairs(
    points: list[PointResult], a: str, b: str, protocol: str
) -> list[tuple[PointResult, PointResult]]:
    def index(system: str) -> dict:
        return {(p.phase, p.label): p for p in points if p.system == system and p.protocol == protocol}

    ours, theirs = index(a), index(b)
    return [(ours[k], theirs[k]) for k in ours if k in theirs]


def _tax_at_lightest_load(run: Run, model: str) -> list[str]:
    taxes = [t for t in run.doc.get("serving_tax", []) if t["model"] == model]
    titles = {p.target: target_title(p) for p in run.points}
    lines = []
    for target in dict.fromkeys(t["target"] for t in taxes):
        tax = min(
            (t for t in taxes if t["target"] == target), key=lambda t: t["load"].get("concurrency") or 0
        )
        added = tax["latency_us"]
        lines.append(
            f"Serving tax of {titles[target]} at {tax['label']}: +{ms(added['p50'])} at p50, "
            f"+{ms(added['p99'])} at p99 over {titles.get(tax['baseline'], tax['baseline'])}."
        )
    return lines


def fairness(run: Run) -> list[tuple[str, str]]:
    """What was held equal between the targets (and what could not be), one row each."""
    manifest = run.manifest
    fair = manifest.get("fairness", {})
    config = fair.get("config", {})
    windows = manifest.get("windows", {})
    models = manifest.get("models", {})
    batching = (
        "off (batch size 1) on every server"
        if (config.get("max_batch_size") or 1) <= 1
        else f"the same on every server: up to {config['max_batch_size']} requests, "
        f"waiting at most {config.get('batch_timeout_ms')} ms"
    )
    payloads = fair.get("payload_bytes", {})
    rows = [
        ("Model", "the same artifact build for every target ("
         + ", ".join(f"{m} {info['content_hash'][:12]}" for m, info in models.items()) + ")"
         if fair.get("same_artifact") else "NOT the same artifact build: do not compare"),
        ("CPUs", _cpus(manifest, config)),
        ("Threads", f"{config.get('instances')} model instance(s) x {config.get('threads')} intra-op "
         f"threads, {config.get('inter_op_threads')} inter-op thread(s), for every server and baseline"),
        ("Batching", batching),
        ("Preset", str(config.get("preset"))),
        ("Wire payload", ", ".join(f"{t} {b} B" for t, b in payloads.items())
         + " (the same tensor; REST carries JSON, gRPC protobuf, in-process the raw array)"),
        ("Load", f"the same plan for every target, {manifest.get('drift_control', {}).get('method', '?')} "
         "order (A B, then B A) against machine drift"),
        ("Measurement", f"{windows.get('warmup_s')} s warm-up excluded, {windows.get('window_s')} s windows "
         f"({windows.get('min_windows')} to {windows.get('max_windows')}), "
         f"{manifest.get('generator', {}).get('histogram', 'HdrHistogram')}; "
         f"latency from the {manifest.get('generator', {}).get('latency_from', 'send time')}"),
    ]  # fmt: skip
    return rows


def _cpus(manifest: dict, config: dict) -> str:
    """Where servers, baselines and the load generator ran, as read back from the kernel when recorded."""
    generator = manifest.get("generator", {})
    model_threads = manifest.get("baselines", {}).get("model_threads_cpus")
    if model_threads is None:  # a run from before the baselines were pinned: they ran where the generator did
        baselines = f"baselines in the load generator's process, on its CPUs {generator.get('cpus')}"
    elif model_threads:
        sets = sorted({str(cpus) for cpus in model_threads.values()})
        baselines = f"baselines' model threads on CPUs {', '.join(sets)} (read back)"
    else:
        baselines = "no baselines"
    processes = generator.get("process_cpus") or []
    workers = sorted({str(p["cpus"]) for p in processes if p.get("role") == "worker"})
    where = f"load generator on CPUs {generator.get('cpus')}" + (
        f" (workers on {', '.join(workers)})" if workers else "")  # fmt: skip
    text = f"servers pinned to CPUs {config.get('cpus')}; {baselines}; {where}"
    return text + (f"; WARNING: {generator['cpus_warning']}" if generator.get("cpus_warning") else "")


def notes(run: Run, error_limit: float) -> list[str]:
    """What a reader must know before trusting the figures."""
    out = []
    if run.doc.get("status") != "complete":
        out.append(
            f"This run is {run.doc.get('status')}: {run.doc.get('error') or 'it did not finish'}. "
            "The figures cover the points measured before it stopped."
        )
    for system in dict.fromkeys(p.system for p in run.points):
        if status := run.status(system):
            out.append(status)
    bound = [p for p in run.points if p.flags.client_bound]
    if bound:
        out.append(
            f"{len(bound)} point(s) were client-bound (a load generator's event loop was at least 90% "
            "busy), so their latencies include generator delay: " + _where(bound) + ". Re-run them with "
            "--workers."
        )
    unstable = [p for p in run.points if not p.flags.stable]
    if unstable:
        out.append(
            f"{len(unstable)} point(s) did not settle (3 windows within the tolerance) before the window "
            "cap; their intervals are wider: " + _where(unstable) + "."
        )
    failing = [p for p in run.points if p.summary.error_rate.value]
    if failing:
        shares = [f"{target_title(p)} {p.label} {percent(p.summary.error_rate.value)}" for p in failing]
        out.append("Requests failed at: " + "; ".join(shares) + ".")
    return out + _left_out_notes(run, error_limit)


def _left_out_notes(run: Run, error_limit: float) -> list[str]:
    """Points left out of the verdicts, points without figures, and figures that are not numbers."""
    out = []
    rejected = [f"{_name(p)} ({why})" for p in run.points if (why := left_out(p, error_limit))]
    if rejected:
        out.append("Left out of the capacity and latency verdicts: " + "; ".join(rejected) + ".")
    if run.unanswered:
        dropped = "; ".join(_unanswered(p) for p in run.unanswered)
        out.append(
            f"{len(run.unanswered)} point(s) have no figures and are missing from this report: {dropped}."
        )
    missing = [f"{_name(p)} {', '.join(names)}" for p in run.points if (names := _missing_figures(p))]
    if missing:
        out.append(
            "Figures missing from results.json (null or not a finite number), shown as “missing”: "
            + "; ".join(missing)
            + "."
        )
    return out


def _name(point: PointResult) -> str:
    """``digits-mlp TorchServe REST c=8``."""
    return f"{point.model} {target_title(point)} {point.label}"


def _unanswered(point: PointResult) -> str:
    """``digits-mlp TorchServe REST c=8 (nothing was answered: ...)``."""
    return f"{_name(point)} ({point.error or 'no request was answered'})"


def _missing_figures(point: PointResult) -> list[str]:
    """The names of a point's summary figures that are missing (a figure the point never had, such as an
    in-process baseline's CPU cost, is not listed)."""
    summary = point.summary
    stats = {name: getattr(summary, name) for name in SUMMARY_FIGURES} | summary.latency_us
    return [name.replace("_rps", "") for name, stat in stats.items() if stat is not None and _missing(stat)]


def _missing(stat: Estimate) -> bool:
    """Whether a figure's value is null or not a finite number, or a bound of its interval is not finite."""
    return not finite(stat.value) or any(b is not None and not finite(b) for b in (stat.low, stat.high))


def _where(points: list[PointResult]) -> str:
    shown = [f"{p.model} {target_title(p)} {p.label}" for p in points[:6]]
    more = f" and {len(points) - 6} more" if len(points) > 6 else ""
    return ", ".join(shown) + more


def searches(run: Run) -> list[str]:
    """The max-rate search's findings, one line per model and target."""
    lines = []
    titles = {p.target: target_title(p) for p in run.points}
    for search in run.doc.get("searches", []):
        rate = search.get("max_rate")
        found = f"{significant(rate)} requests/s" if rate else "no probed rate"
        target = titles.get(search.get("target"), search.get("target"))
        lines.append(
            f"{search.get('model')} {target}: {found} kept p99 under {search.get('p99_bound_ms')} ms"
        )
    return lines
