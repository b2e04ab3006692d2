"""`serveoff bench`: every load point against every target, interleaved, into ``results.json``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serveoff.errors import ServeoffError, Stopped
from serveoff.loadtest.calibrate import calibrate, calibration_line
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.manifest import library_versions, machine, serveoff_info
from serveoff.loadtest.measure import CLIENT_BOUND_BUSY, PointAborted, Subject, measure
from serveoff.loadtest.plan import LoadPoint, SearchPolicy, WindowPolicy, open_loop
from serveoff.loadtest.progress import BenchProgress
from serveoff.loadtest.recorder import LATE_SEND_S
from serveoff.loadtest.results import PointResult, ResultsFile, Summary
from serveoff.loadtest.search import RateSearch
from serveoff.loadtest.send import SendError, send
from serveoff.loadtest.startup import RuntimeStartup, measure_startups
from serveoff.loadtest.warmup import describe as describe_warmup
from serveoff.loadtest.warmup import settle
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.serving import runtimes
from serveoff.serving.base import WireRequest
from serveoff.serving.fleet import Record, log_tail, usage_of, usage_source
from serveoff.serving.metrics import scrape
from serveoff.serving.resources import (
    LoadgenCpus,
    ServerConfig,
    available_cpus,
    check_batch_fits,
    loadgen_cpus,
    pinned,
)
from serveoff.serving.targets import SERVERS, Target, server_class
from serveoff.signals import deferred, stop_reason

ANSWER_ATOL = 1e-3  # a server's answer vs the TorchScript model's: far above parity, far below a wrong model
DRIFT_CONTROL = {
    "method": "interleaved",
    "detail": "each load point runs on every target before the next point starts; the target order "
    "alternates (A B, then B A) so that machine drift over time favours no target",
}


@dataclass
class BenchPlan:
    """What one `serveoff bench` runs."""

    models: list[str]
    targets: list[Target]
    points: list[LoadPoint]  # empty for a search-only run
    policy: WindowPolicy = field(default_factory=WindowPolicy)
    search: SearchPolicy | None = None
    batch_size: int = 1
    timeout_s: float = 10.0
    workers: int = 0
    ui_port: int | None = None
    ui_host: str = "127.0.0.1"  # 0.0.0.0 only inside a container that publishes the port on 127.0.0.1
    seed: int = 0
    loadgen_cpus: tuple[int, ...] | None = None  # None: every CPU not given to the servers
    calibrate: bool = True  # measure the harness's own floor first (calibrate.py)

    def to_json(self) -> dict:
        return {
            "models": self.models,
            "targets": [t.name for t in self.targets],
            "points": [p.to_json() for p in self.points],
            "search": self.search.to_json() if self.search else None,
            "batch_size": self.batch_size,
            "timeout_s": self.timeout_s,
            "seed": self.seed,
        }


def default_targets(records: list[Record], layouts: Iterable[ArtifactLayout] = ()) -> list[Target]:
    """Every protocol of every running server, plus every in-process runtime installed here that every
    one of ``layouts`` was built with, whether or not its framework's server runs."""
    targets = [Target(rec.server, protocol) for rec in records for protocol in ("rest", "grpc")]
    manifests = [require_manifest(layout) for layout in layouts]
    for name in runtimes.names():
        if runtimes.installed(name) and all(runtimes.built(name, m) is None for m in manifests):
            targets.append(Target(*name.split(":")))
    return targets


def shared_config(records: list[Record]) -> ServerConfig | None:
    """The one config every running server runs under; an error when they differ (an unfair comparison).

    The launcher and memory limit count too: a server in a container against a native one is unfair.
    """
    configs = {json.dumps(_setting(rec), sort_keys=True): rec for rec in records}
    if len(configs) > 1:
        described = "; ".join(f"{rec.server}: {_setting(rec)}" for rec in configs.values())
        raise ServeoffError(
            f"the running servers have different resource settings ({described}); restart them with one "
            "setting (`serveoff down`, then `serveoff up`)"
        )
    return records[0].config if records else None


def _setting(rec: Record) -> dict:
    return rec.config.to_json() | {"launcher": "native" if rec.container is None else "container",
                         "memory_limit_bytes": rec.memory_bytes}  # fmt: skip


def input_batch(layout: ArtifactLayout, batch_size: int) -> np.ndarray:
    """``batch_size`` held-out inputs of the model, in its wire dtype (repeated when fewer were saved)."""
    manifest = require_manifest(layout)
    samples = np.load(layout.samples)
    rows = np.resize(samples, (batch_size, *samples.shape[1:]))
    return np.ascontiguousarray(rows, dtype=manifest["input"]["dtype"])


def build_subjects(
    plan: BenchPlan, records: list[Record], artifacts: Path, config: ServerConfig
) -> dict[tuple[str, str], Subject]:
    """One subject per (model, target); a clear line for a target whose server is not running."""
    by_server = {rec.server: rec for rec in records}
    for target in plan.targets:
        if not target.is_baseline and target.system not in by_server:
            raise ServeoffError(
                f"target {target.name} needs a running {target.system}: start it with "
                f"`serveoff up --native --server {target.system}` (or use `serveoff run`)"
            )
    usages = {rec.server: usage_of(rec) for rec in records}  # one per server, shared by its targets
    subjects = {}
    for model in plan.models:
        layout = _layout(model, records, artifacts)
        batch = input_batch(layout, plan.batch_size)
        for target in plan.targets:
            if target.is_baseline:
                _runtime_built(target, layout)
                request = {
                    "kind": "inprocess", "address": "", "path": "", "headers": {}, "body": batch.tobytes(),
                    "inprocess": {
                        "framework": target.name, "model": model, "artifact": str(layout.root),
                        "config": config.to_json(), "instances": config.instances or 1,
                        "dtype": str(batch.dtype), "shape": list(batch.shape),
                    },
                }  # fmt: skip
                source = runtimes.source(target.name)
                subjects[model, target.name] = Subject(target, model, request, plan.batch_size, source)
                continue
            rec = by_server[target.system]
            if model not in rec.models:
                raise ServeoffError(
                    f"{target.system} does not serve {model} (it serves {', '.join(rec.models)}); "
                    f"restart it with `serveoff up --model {model}`"
                )
            server_layout = rec.layouts[model]
            _same_artifact(layout, server_layout, target)
            wire = server_class(target.system).wire_request(
                rec.endpoints, server_layout, target.protocol, batch
            )
            request = {"kind": wire.protocol, "address": wire.address, "path": wire.path,
                       "body": wire.body, "headers": wire.headers}  # fmt: skip
            subjects[model, target.name] = Subject(
                target, model, request, plan.batch_size, server_source(rec),
                usage=usages[rec.server],
                metrics=lambda rec=rec: scrape(rec.endpoints.metrics),
                log_tail=lambda rec=rec: log_tail(rec),
            )  # fmt: skip
    return subjects


def _runtime_built(target: Target, layout: ArtifactLayout) -> None:
    """One clear line when ``layout``'s build lacks runtime ``target`` or this machine cannot run it."""
    if not runtimes.installed(target.name):
        raise ServeoffError(
            f"target {target.name} needs {', '.join(runtimes.PACKAGES[target.name])} installed; install "
            "serveoff's pinned dependencies (./setup.sh) or choose another target"
        )
    why = runtimes.built(target.name, require_manifest(layout))
    if why is not None:
        raise ServeoffError(f"{layout.name} has no {target.name} runtime ({why}); choose another target")


def server_source(rec: Record) -> str:
    """The server and the version it reports for itself (a test double's version says it is one)."""
    own = next(iter(rec.versions.values()), "of unknown version")
    return f"{rec.server} {own}"


def model_layouts(models: list[str], records: list[Record], artifacts: Path) -> list[ArtifactLayout]:
    """The artifacts each of ``models`` is benchmarked from: the servers' own, else ``artifacts``'."""
    return [_layout(model, records, artifacts) for model in models]


def _layout(model: str, records: list[Record], artifacts: Path) -> ArtifactLayout:
    for rec in records:
        if model in rec.models:
            return rec.layouts[model]
    layout = ArtifactLayout(artifacts / model, model)
    require_manifest(layout)
    return layout


def _same_artifact(expected: ArtifactLayout, served: ArtifactLayout, target: Target) -> None:
    """Fairness: every target must run the very same build of the model."""
    want, got = require_manifest(expected)["content_hash"], require_manifest(served)["content_hash"]
    if want != got:
        raise ServeoffError(
            f"{target.system} serves another build of {expected.name} ({served.root}) than the other "
            f"targets ({expected.root}); restart the servers on one artifacts directory"
        )


def check_answers(subjects: dict[tuple[str, str], Subject], records: list[Record], timeout_s: float) -> None:
    """Send each server's wire request once and compare the answer with the TorchScript model's."""
    from serveoff.models.runners import TorchScriptRunner

    by_server = {rec.server: rec for rec in records}
    expected: dict[str, np.ndarray] = {}
    for (model, _), subject in subjects.items():
        if subject.target.is_baseline:
            continue
        layout = by_server[subject.target.system].layouts[model]
        if model not in expected:
            expected[model] = TorchScriptRunner(layout.torchscript).predict(
                input_batch(layout, subject.batch_size)
            )
        body = _send_once(subject.request, timeout_s, subject.target.name)
        answer = server_class(subject.target.system).decode_reply(layout, subject.target.protocol, body)
        want = expected[model]
        if answer.shape != want.shape or not np.allclose(answer, want, atol=ANSWER_ATOL, rtol=0):
            diff = float(np.max(np.abs(answer - want))) if answer.shape == want.shape else None
            raise ServeoffError(
                f"{subject.target.name} answers {model} with outputs that are not the model's "
                f"(shape {list(answer.shape)} vs {list(want.shape)}, max diff {diff}); "
                "is it serving another model?"
            )


def _send_once(request: dict, timeout_s: float, name: str) -> bytes:
    """The reply to a subject's prepared request, sent once the way every test sends one."""
    fields = (request[key] for key in ("kind", "address", "path", "body", "headers"))
    wire = WireRequest(*fields)
    try:
        return send(wire, timeout_s)
    except SendError as err:
        raise ServeoffError(f"{name} did not answer a first request: {err}") from None


def run_manifest(
    plan: BenchPlan,
    records: list[Record],
    artifacts: Path,
    subjects: dict,
    config: ServerConfig,
    loadgen: LoadgenCpus | None = None,
) -> dict:
    """Everything about the run that its numbers depend on."""
    return {
        "serveoff": serveoff_info(),
        "machine": machine(),
        "libraries": library_versions(),
        "servers": {rec.server: _server_entry(rec) for rec in records},
        "baseline_of": {name: server_class(name).framework for name in SERVERS},
        "systems": systems_entry(records, plan),
        "baselines": {
            "runtimes": {
                t.name: {"title": runtimes.get(t.name).title, "versions": runtimes.versions(t.name)}
                for t in plan.targets if t.is_baseline
            },
            "config": config.to_json(),
            "where": "in the controller's process (never in locust workers), with the servers' model "
            "instances as a thread pool off the event loop and the servers' thread counts; every thread "
            "that runs the model is pinned to the servers' CPUs (serving/inprocess.py)",
            "cpus": list(config.cpus) if config.cpus else None,
        },
        "models": {model: _model_entry(model, records, artifacts) for model in plan.models},
        "generator": {
            "engine": "locust",
            "processes": f"master + {plan.workers} workers" if plan.workers else "1 local process",
            "workers": plan.workers,
            "cpus": list(available_cpus()),  # read back from the kernel after pinning
            "cpus_warning": loadgen.warning if loadgen else None,
            "client_bound_when_event_loop_busy_over": CLIENT_BOUND_BUSY,
            "latency_from": "scheduled send time (open loop); send time (closed loop)",
            "histogram": "HdrHistogram, microseconds, 3 significant digits",
        },
        "fairness": {
            "same_artifact": True,
            "config": config.to_json(),
            "payload_bytes": {name: s.payload_bytes for (_, name), s in subjects.items()},
        },
        "plan": plan.to_json(),
        "windows": plan.policy.to_json(),
        "drift_control": DRIFT_CONTROL,
    }


def systems_entry(records: list[Record], plan: BenchPlan) -> dict:
    """How the report names each system of the run, and what a user of it should know about its upkeep."""
    servers = {rec.server: server_class(rec.server) for rec in records}
    entry = {name: {"title": cls.title, "status": cls.status} for name, cls in servers.items()}
    for system in dict.fromkeys(t.system for t in plan.targets if t.is_baseline):
        entry[system] = {"title": runtimes.SYSTEM_TITLES.get(system, system), "status": None}
    return entry


def _model_entry(model: str, records: list[Record], artifacts: Path) -> dict:
    """What the manifest keeps of one model's build: its artifact, hash, wire format, versions, parity."""
    art = _layout(model, records, artifacts)
    manifest = require_manifest(art)
    parity = json.loads(art.parity.read_text()) if art.parity.is_file() else None
    return {
        "artifact": str(art.root), "content_hash": manifest["content_hash"], "input": manifest["input"],
        "output": manifest["output"], "built_with": manifest["versions"], "parity": parity,
    }  # fmt: skip


def _server_entry(rec: Record) -> dict:
    """What the manifest keeps of one server: versions, setting, where it ran and how its cost is read."""
    return {
        "versions": rec.versions,
        "config": rec.config.to_json(),
        "endpoints": rec.endpoints.to_json(),
        "launcher": rec.launcher,
        "container": rec.container,
        "memory_limit_bytes": rec.memory_bytes,
        "cost_from": usage_source(rec),
        "log": rec.log,
    }


def run_bench(
    plan: BenchPlan,
    records: list[Record],
    artifacts: Path,
    run_dir: Path,
    progress: BenchProgress,
) -> ResultsFile:
    """Measure ``plan`` and write ``run_dir/results.json`` after every point; partial on failure."""
    plan.policy.validate()
    if plan.search:
        plan.search.validate()
    config = shared_config(records) or _matched()
    check_batch_fits(plan.batch_size, config)  # before any request is sent
    loadgen = loadgen_cpus(config.cpus, plan.loadgen_cpus)
    subjects = build_subjects(plan, records, artifacts, config)
    check_answers(subjects, records, plan.timeout_s)
    with pinned(loadgen.cpus):  # the controller, and every locust worker it starts, on the generator's CPUs
        if loadgen.warning:
            progress.console.print(f"serveoff: warning: {loadgen.warning}", markup=False, highlight=False)
        manifest = run_manifest(plan, records, artifacts, subjects, config, loadgen)
        return _run_pinned(plan, subjects, ResultsFile(run_dir, run_dir.name, manifest), progress, loadgen)


def _saved_in(message: str, path: Path) -> str:
    """``message`` with where the partial results are on its first line (a server's output follows it)."""
    line, newline, output = message.partition("\n")
    return f"{line}; partial results saved in {path}{newline}{output}"


def _run_pinned(plan: BenchPlan, subjects: dict[tuple[str, str], Subject], results: ResultsFile,
                progress: BenchProgress, loadgen: LoadgenCpus) -> ResultsFile:  # fmt: skip
    """Start the runtimes, calibrate, run the plan; the results marked partial on any failure."""
    engines = Engines(plan.workers, plan.ui_port, results.path.parent, plan.ui_host, results)
    try:
        with pinned(loadgen.server_side or loadgen.cpus):  # no load yet: every thread that loads or
            results.add_runtimes(_startups(subjects, progress))  # times a runtime is on the servers' CPUs
        _record_baseline_cpus(results, subjects)
        _run_plan(plan, subjects, results, progress, engines, loadgen.server_side)
        _record_baseline_cpus(results, subjects)  # again: the load points' pool threads ran it too
    except PointAborted as err:
        _finish(results, err.message, err.result)
        raise ServeoffError(_saved_in(err.message, results.path)) from None
    except ServeoffError as err:
        _finish(results, str(err))
        raise ServeoffError(_saved_in(str(err), results.path)) from None
    except Stopped as stop:
        _finish(results, stop.reason)
        stop.saved = results.path
        raise
    except BaseException as err:  # an interrupt or a bug: the run is never left marked running
        _finish(results, stop_reason(err))
        raise
    _finish(results)
    for line in overload_warnings(results.doc["points"]):
        progress.console.print(f"serveoff: warning: {line}", markup=False, highlight=False)
    return results


def _record_baseline_cpus(results: ResultsFile, subjects: dict[tuple[str, str], Subject]) -> None:
    baselines = results.doc["manifest"]["baselines"]
    results.add_to_manifest("baselines", baselines | {"model_threads_cpus": baseline_thread_cpus(subjects)})


def baseline_thread_cpus(subjects: dict[tuple[str, str], Subject]) -> dict[str, list[int] | None]:
    """Per in-process target, the CPUs the threads that ran its model may use, read back from the kernel."""
    from serveoff.serving.inprocess import applied_cpus

    return {
        f"{model} {name}": applied_cpus(name, s.request["inprocess"]["artifact"])
        for (model, name), s in subjects.items() if s.target.is_baseline
    }  # fmt: skip


def _calibrate(plan: BenchPlan, subjects: dict[tuple[str, str], Subject], engines: Engines,
               results: ResultsFile, progress: BenchProgress,
               server_cpus: tuple[int, ...] | None) -> None:  # fmt: skip
    """The harness's own floor into the manifest (``harness``), one line; a failure there is a warning."""
    rest = next((s.request for s in subjects.values() if s.request["kind"] == "rest"), {})
    found = calibrate(engines.for_servers(), rest, results.path.parent, server_cpus, available_cpus(),
                      plan.timeout_s)  # fmt: skip
    results.add_to_manifest("harness", found.to_json())
    progress.console.print(calibration_line(found), markup=False, highlight=False)


def _startups(subjects: dict[tuple[str, str], Subject], progress: BenchProgress) -> list[RuntimeStartup]:
    """Load the in-process runtimes before any load point, timing each, one line per runtime."""
    found = measure_startups(subjects)
    for each in found:
        compiled = f" (compile {each.compile_s:.1f} s)" if each.compile_s is not None else ""
        progress.console.print(
            f"{each.model} {each.target}: loaded in {each.load_s:.2f} s, first call "
            f"{each.first_call_ms:.1f} ms{compiled}, then {each.warm_call_ms:.2f} ms",
            markup=False, highlight=False,
        )  # fmt: skip
    return found


def _finish(results: ResultsFile, error: str | None = None, last: dict | None = None) -> None:
    """Mark the run complete, or partial with ``error`` (after adding the ``last`` point it measured);
    a stop signal waits until the file says so."""
    with deferred():
        if last is not None:
            results.add_point(last)
        results.finish(error)


def overload_warnings(points: list[PointResult] | list[dict]) -> list[str]:
    """One line per sweep point whose load was not served or not sent on time (search probes may be)."""
    lines = []
    late_ms = f"{LATE_SEND_S * 1000:.0f} ms"
    for point in (p for p in map(PointResult.of, points) if p.phase == "sweep"):
        name = f"{point.model} {point.target} {point.label}"
        if point.flags.overloaded:
            lines.append(f"{name} was overloaded: {point.flags.overload}; its figures describe a server past "
                         "its capacity (find the capacity with --load search)")  # fmt: skip
        if point.flags.generator_bound:
            lines.append(f"{name} was generator-bound: {point.flags.late_sends} requests were sent over "
                         f"{late_ms} late, which their latencies include; add --workers")  # fmt: skip
    return lines


def _run_plan(plan: BenchPlan, subjects: dict[tuple[str, str], Subject], results: ResultsFile,
              progress: BenchProgress, engines: Engines,
              server_cpus: tuple[int, ...] | None) -> None:  # fmt: skip
    """The harness calibration, every load point on every target (each target warmed until it settles
    before its first point), then the searches; the load generators closed at the end."""
    try:
        if plan.calibrate:
            _calibrate(plan, subjects, engines, results, progress, server_cpus)
        progress.start(len(plan.models) * len(plan.targets) * len(plan.points), plan.policy.max_windows)
        for model in plan.models:
            for index, point in enumerate(plan.points):
                order = plan.targets if index % 2 == 0 else plan.targets[::-1]
                for target in order:
                    subject = subjects[model, target.name]
                    if index == 0:
                        _settle(engines, subject, point, plan, results, progress)
                    _measure(engines, subject, point, plan, results, progress, "sweep")
            if plan.search:
                _search(engines, [subjects[model, t.name] for t in plan.targets], plan, results, progress)
    finally:
        with deferred():  # a stop signal waits until the locust workers are stopped too
            progress.close()
            engines.close()


class Engines:
    """The load generators, started on first use: locust with ``workers`` for servers, and a local one.

    In-process baselines always run in this process, so that they get exactly the servers' model
    instances and threads; spread over worker processes, each process would load its own copy.
    Each engine's processes' CPUs, read back from the kernel, go into the manifest when it starts.
    """

    def __init__(self, workers: int, ui_port: int | None, logdir: Path, ui_host: str,
                 results: ResultsFile | None = None) -> None:  # fmt: skip
        self.workers, self.ui_port, self.logdir, self.ui_host = workers, ui_port, logdir, ui_host
        self.results = results
        self._remote: LoadEngine | None = None
        self._local: LoadEngine | None = None

    def for_servers(self) -> LoadEngine:
        """The engine that loads the servers (with ``workers`` worker processes)."""
        if self._remote is None:
            self._remote = LoadEngine(self.workers, self.ui_port, self.logdir, self.ui_host)
            self._record(self._remote)
        return self._remote

    def for_subject(self, subject: Subject) -> LoadEngine:
        if not subject.target.is_baseline or self.workers == 0:
            return self.for_servers()
        if self._local is None:
            self._local = LoadEngine(0)
        return self._local

    def _record(self, engine: LoadEngine) -> None:
        if self.results is None:
            return
        generator = self.results.doc["manifest"]["generator"]
        found = [{"pid": p.pid, "role": "controller" if p.pid == os.getpid() else "worker",
                  "cpus": sorted(p.cpu_affinity())} for p in engine.processes()]  # fmt: skip
        self.results.add_to_manifest("generator", generator | {"process_cpus": found})

    def close(self) -> None:
        for engine in (self._local, self._remote):
            if engine is not None:
                engine.close()


def _matched() -> ServerConfig:
    from serveoff.serving.resources import server_config

    return server_config("matched")


def _settle(engines: Engines, subject: Subject, point: LoadPoint, plan: BenchPlan, results: ResultsFile,
            progress: BenchProgress) -> None:  # fmt: skip
    """Warm ``subject`` at its first point until it settles (``warmups[]``), one line."""
    progress.point(f"{subject.model} {subject.target.name} warm-up at {point.label}")
    found = settle(engines.for_subject(subject), subject, point, plan.policy, timeout_s=plan.timeout_s,
                   seed=plan.seed)  # fmt: skip
    if found is not None:
        results.add_warmup(found)
        progress.console.print(describe_warmup(found), markup=False, highlight=False)


def _measure(
    engines: Engines, subject: Subject, point: LoadPoint, plan: BenchPlan, results: ResultsFile,
    progress: BenchProgress, phase: str,
) -> dict:  # fmt: skip
    progress.point(f"{subject.model} {subject.target.name} {point.label}")
    started = time.monotonic()
    result = measure(
        engines.for_subject(subject), subject, point, plan.policy, timeout_s=plan.timeout_s,
        seed=plan.seed, phase=phase, on_window=progress.window,
    )  # fmt: skip
    results.add_point(result)
    progress.finished(describe(result, time.monotonic() - started))
    return result


def describe(result: PointResult | dict, seconds: float) -> str:
    """One log line for a measured point."""
    point = PointResult.of(result)
    summary = point.summary or Summary(requests=0)

    def ms(name: str) -> str:
        value = summary.latency(name).value
        return f"{value / 1000:8.2f} ms" if value is not None else "       - ms"

    rps = summary.throughput_rps.value or 0.0
    flags = [] if point.flags.stable else ["unstable"]
    if point.flags.client_bound:
        flags.append("CLIENT-BOUND")
    if point.flags.generator_bound:
        flags.append(f"GENERATOR-BOUND: {point.flags.late_sends} requests sent late")
    if point.flags.overloaded:
        flags.append(f"OVERLOADED: {point.flags.overload}")
    elif summary.failed:
        flags.append(f"{summary.failed} failed")
    return (
        f"{point.model} {point.target:<16} {point.label:<10} {rps:9.1f} req/s  p50 {ms('p50')}  "
        f"p99 {ms('p99')}  {summary.windows} windows, {seconds:.0f} s"
        + f"  ({point.source})"
        + (f"  [{', '.join(flags)}]" if flags else "")
    )


def _search(
    engines: Engines,
    subjects: list[Subject],
    plan: BenchPlan,
    results: ResultsFile,
    progress: BenchProgress,
) -> None:
    """Search every target's max rate in lockstep rounds, alternating the order, like the sweep."""
    assert plan.search is not None
    searches = {s.target.name: RateSearch(plan.search) for s in subjects}
    round_ = 0
    while True:
        pending = [(s, searches[s.target.name].next_rate()) for s in subjects]
        pending = [(s, rate) for s, rate in pending if rate is not None]
        if not pending:
            break
        progress.more(len(pending))
        for subject, rate in pending if round_ % 2 == 0 else pending[::-1]:
            point = open_loop(rate, plan.search.arrival)
            if round_ == 0 and not plan.points:  # a search-only run: warm before the first probe
                _settle(engines, subject, point, plan, results, progress)
            result = _measure(engines, subject, point, plan, results, progress, "search")
            searches[subject.target.name].record(rate, result)
        round_ += 1
    for subject in subjects:
        entry = {"model": subject.model, "target": subject.target.name} | searches[
            subject.target.name
        ].to_json()
        results.add_search(entry)
