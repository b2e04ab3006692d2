"""The ``serveoff`` command."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from serveoff.errors import ServeoffError
from serveoff.serving.resources import check_batch_fits

app = typer.Typer(
    help="The same trained model on TorchServe and TF Serving, measured side by side.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_ARTIFACTS = Path("artifacts")


@app.command()
def models() -> None:
    """List the model zoo (the names `serveoff build --model` takes)."""
    from serveoff.models.zoo import DEFAULT_MODELS, ZOO, architecture

    for name in ZOO:
        arch = architecture(name)
        default = " (default)" if name in DEFAULT_MODELS else ""
        wire = f"{arch.input.dtype}[n,{','.join(map(str, arch.input.shape))}]"
        typer.echo(f"{name:<18} {wire:<22} -> {arch.num_classes:>2} logits  {arch.description}{default}")


@app.command()
def build(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Zoo model to build (repeatable; default: all three)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Artifacts directory.")] = DEFAULT_ARTIFACTS,
    torchscript: Annotated[
        Path | None, typer.Option(help="Your TorchScript file (bring your own model).")
    ] = None,
    savedmodel: Annotated[
        Path | None, typer.Option(help="Your SavedModel directory (bring your own model).")
    ] = None,
    sample_inputs: Annotated[
        Path | None,
        typer.Option(help="A .npy batch of wire-format inputs for the parity check (your own model)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The name to serve your own model under.")] = None,
    atol: Annotated[float, typer.Option(help="Parity tolerance: max abs difference of the outputs.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for data, initialisation and training of zoo models.")] = 0,
) -> None:
    """Build TorchScript + .mar and a SavedModel per model, and prove they compute the same function."""
    user_args = {
        "--torchscript": torchscript,
        "--savedmodel": savedmodel,
        "--sample-inputs": sample_inputs,
        "--name": name,
    }
    given = [flag for flag, value in user_args.items() if value is not None]
    if given and model:
        raise ServeoffError(
            "use either --model (zoo) or --torchscript/--savedmodel/--sample-inputs/--name, not both"
        )
    if given and len(given) < len(user_args):
        missing = ", ".join(flag for flag in user_args if flag not in given)
        raise ServeoffError(f"bringing your own model also needs {missing}")
    if not 0 < atol < 1:  # NaN fails this too
        raise ServeoffError(f"--atol must be a finite number above 0 and below 1, got {atol}")
    if not 0 <= seed < 2**32:
        raise ServeoffError(f"--seed must be from 0 to {2**32 - 1}, got {seed}")

    from serveoff.models.zoo import DEFAULT_MODELS, check_known

    names = [] if given else [check_known(each) for each in dict.fromkeys(model or DEFAULT_MODELS)]
    from serveoff.models import build as builder

    log = console.print
    if given:
        results = [
            builder.build_user_model(name, torchscript, savedmodel, sample_inputs, out, atol=atol, log=log)
        ]
    else:
        results = [builder.build_zoo_model(each, out, seed=seed, atol=atol, log=log) for each in names]
    for result in results:
        typer.echo(f"{result.name}: {result.root}")


DEFAULT_STATE = Path(".serveoff/servers.json")
DEFAULT_WORKDIR = Path(".serveoff/servers")
DEFAULT_MEMORY = "4g"  # each server container's memory limit

ServeModelOpt = Annotated[
    list[str] | None, typer.Option("--model", "-m", help="Model to serve (repeatable; default: digits-mlp).")
]
ServerOpt = Annotated[
    list[str] | None,
    typer.Option("--server", "-s", help="torchserve or tfserving (repeatable; default both)."),
]
PresetOpt = Annotated[str, typer.Option(help="matched or out-of-the-box.")]
CpusOpt = Annotated[str | None, typer.Option(help="CPU set of the servers, e.g. 0-3 (default: all).")]
InstancesOpt = Annotated[
    int | None, typer.Option(help="Model instances per server: TorchServe workers, TF batch threads.")
]
ThreadsOpt = Annotated[int | None, typer.Option(help="Intra-op threads per instance.")]
MaxBatchOpt = Annotated[int | None, typer.Option(help="Server-side batch size (1: no batching).")]
BatchTimeoutOpt = Annotated[int | None, typer.Option(help="How long a partial batch waits, ms.")]
DockerOpt = Annotated[
    bool,
    typer.Option("--docker", help="Run the servers from their Docker images (the same CPU set and memory "
                 "limit for each, ports on 127.0.0.1 only)."),
]  # fmt: skip
MemoryOpt = Annotated[str, typer.Option(help="Memory limit of each server's container (--docker), e.g. 4g.")]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option("--image", help="SERVER=IMAGE: run this image, not the server's (--docker; repeatable)."),
]
MountOpt = Annotated[
    list[Path] | None,
    typer.Option("--mount", help="A host path the images need, mounted read-only at its place (--docker)."),
]


def setting(preset: str, cpus: str | None, instances: int | None, threads: int | None,
            max_batch_size: int | None, batch_timeout_ms: int | None, docker: bool = False):  # fmt: skip
    """The one fair ``ServerConfig`` from the command line; one clear line for each bad value.

    With ``docker``, CPU sets are checked against the Docker engine's CPUs, not this process's; every
    value is checked first against this machine (whose CPUs the engine cannot outnumber), before the
    engine is asked.
    """
    import os

    from serveoff.serving.container import engine_cpus
    from serveoff.serving.resources import parse_cpus, server_config

    def checked(available: tuple[int, ...] | None):
        chosen = parse_cpus(cpus, available) if cpus is not None else None  # "" is malformed, not "all"
        return server_config(
            preset, cpus=chosen, instances=instances, threads=threads,
            max_batch_size=max_batch_size, batch_timeout_ms=batch_timeout_ms, available=available,
        )  # fmt: skip

    if not docker:
        return checked(None)
    checked(tuple(range(os.cpu_count() or 1)))
    return checked(engine_cpus())


def checked_servers(names: list[str] | None, docker: bool, options=None) -> list[str]:
    """The servers asked for (default: all), each checked to be runnable here before anything starts;
    in containers with ``options`` (``ContainerOptions``), also their images and memory limit."""
    from serveoff.serving.container import check_images, in_container
    from serveoff.serving.targets import SERVERS, server_class

    servers = list(dict.fromkeys(names or SERVERS))
    for name in servers:
        cls = server_class(name)
        (in_container(cls) if docker else cls).check_installed()
    if options is not None:
        check_images(servers, options)
    return servers


@app.command()
def up(
    model: ServeModelOpt = None,
    server: ServerOpt = None,
    native: Annotated[bool, typer.Option("--native", help="Run the servers as local processes.")] = False,
    docker: DockerOpt = False,
    memory: MemoryOpt = DEFAULT_MEMORY,
    image: ImageOpt = None,
    mount: MountOpt = None,
    artifacts: Annotated[
        Path, typer.Option(help="Artifacts directory (missing models are built).")
    ] = DEFAULT_ARTIFACTS,
    preset: PresetOpt = "matched",
    cpus: CpusOpt = None,
    instances: InstancesOpt = None,
    threads: ThreadsOpt = None,
    max_batch_size: MaxBatchOpt = None,
    batch_timeout_ms: BatchTimeoutOpt = None,
    state: Annotated[Path, typer.Option(help="Where to record what was started.")] = DEFAULT_STATE,
) -> None:
    """Start model servers by hand; `serveoff down` stops exactly what this started."""
    if native == docker:
        raise ServeoffError("say where the servers run: --native (local processes) or --docker (images)")
    from serveoff.serving import fleet
    from serveoff.serving.container import container_options

    options = container_options(memory, image or [], mount or []) if docker else None
    models = _models(model, artifacts)
    config = setting(preset, cpus, instances, threads, max_batch_size, batch_timeout_ms, docker)
    servers = checked_servers(server, docker, options)
    fleet.check_none_running(state)  # before building anything
    layouts = ensure_built(models, artifacts)
    records = fleet.start_servers(servers, layouts, config, DEFAULT_WORKDIR.resolve(), state, docker=options)
    for rec in records:
        where = f"container {rec.container[:12]}" if rec.container else "native"
        typer.echo(f"{rec.server} ({where}): REST {rec.endpoints['rest']}  gRPC {rec.endpoints['grpc']}  "
                   f"metrics {rec.endpoints['metrics']}  models {', '.join(rec.models)}")  # fmt: skip
    typer.echo(f"stop them with: serveoff down (recorded in {state})")


@app.command()
def down(
    state: Annotated[Path, typer.Option(help="The record `serveoff up` wrote.")] = DEFAULT_STATE,
) -> None:
    """Stop the servers `serveoff up` started (by their recorded PIDs or container IDs)."""
    from serveoff.serving import fleet

    stopped = fleet.stop_servers(state)
    typer.echo("stopped " + ", ".join(stopped) if stopped else "no server of serveoff was running")


@app.command()
def prepare(
    model: ServeModelOpt = None,
    stack: Annotated[Path, typer.Option(help="Where each server's launch files go.")] = Path("stack"),
    artifacts: Annotated[
        Path, typer.Option(help="Artifacts directory (missing models are built).")
    ] = DEFAULT_ARTIFACTS,
    memory: Annotated[str, typer.Option(help="The servers' containers' memory limit (checked).")] = (
        DEFAULT_MEMORY
    ),
    preset: PresetOpt = "matched",
    cpus: CpusOpt = None,
    instances: InstancesOpt = None,
    threads: ThreadsOpt = None,
    max_batch_size: MaxBatchOpt = None,
    batch_timeout_ms: BatchTimeoutOpt = None,
    loadgen_cpus: Annotated[
        str | None, typer.Option(help="The load generator's CPU set (compose's bench service), checked.")
    ] = None,
) -> None:
    """For docker compose: build the missing models, then write every server's configuration and launch
    script into STACK, from one fair setting. Every value is checked before anything is built."""
    from serveoff.serving.container import parse_memory
    from serveoff.serving.stack import loadgen_overlap, write_stack

    config = setting(preset, cpus, instances, threads, max_batch_size, batch_timeout_ms)
    parse_memory(memory)
    shared = loadgen_overlap(loadgen_cpus, config) if loadgen_cpus else []
    if shared:
        console.print(f"serveoff: warning: the load generator shares CPUs {shared} with the servers and "
                      "takes CPU from the server it measures; give SERVEOFF_LOADGEN_CPUS other CPUs than "
                      "SERVEOFF_SERVER_CPUS", markup=False)  # fmt: skip
    models = _models(model, artifacts)
    layouts = ensure_built(models, artifacts)
    path = write_stack(layouts, config, stack)
    typer.echo(f"stack: {path} (models {', '.join(models)}; CPUs {cpus or 'all'}, memory {memory})")


DEFAULT_RESULTS = Path("results")

ModelOpt = Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to benchmark (repeatable).")]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="torchserve:rest, torchserve:grpc, tfserving:rest, tfserving:grpc, "
                 "or an in-process runtime: torch:inprocess, torch:compiled, tf:inprocess, tf:xla, "
                 "onnx:inprocess (repeatable; default: every running server's protocols "
                 "and every in-process runtime installed and built)."),
]  # fmt: skip
LoadOpt = Annotated[str, typer.Option(help="closed (concurrency sweep), open (rate sweep) or search.")]
ConcurrencyOpt = Annotated[str | None, typer.Option(help="Closed-loop users per point [1,2,4,8,16,32].")]
RateOpt = Annotated[str | None, typer.Option(help="Open-loop requests/s per point [25,50,100,200].")]
ArrivalOpt = Annotated[str, typer.Option(help="Open-loop arrivals: poisson or constant.")]
BoundOpt = Annotated[float, typer.Option(help="search: the p99 latency bound, ms.")]
StartRateOpt = Annotated[float, typer.Option(help="search: the first rate probed, requests/s.")]
ProbesOpt = Annotated[int, typer.Option(help="search: at most this many probes per target.")]
BatchOpt = Annotated[int, typer.Option(help="Inputs per request.")]
TimeoutOpt = Annotated[float, typer.Option(help="Request timeout, s.")]
WarmupOpt = Annotated[float, typer.Option(help="Warm-up before each point's windows, s (not counted).")]
WindowOpt = Annotated[float, typer.Option(help="Measurement window, s.")]
MinWindowsOpt = Annotated[int, typer.Option(help="Windows at least per point.")]
MaxWindowsOpt = Annotated[int, typer.Option(help="Windows at most per point, when not stable before.")]
ToleranceOpt = Annotated[float, typer.Option(help="Stable: 3 windows within this share of their mean.")]
WorkersOpt = Annotated[int, typer.Option(help="Locust worker processes (0: generate load in this process).")]
UiOpt = Annotated[bool, typer.Option("--ui", help="Serve locust's web UI on 127.0.0.1 while it runs.")]
UiPortOpt = Annotated[int, typer.Option(help="Port of locust's web UI.")]
UiHostOpt = Annotated[
    str, typer.Option(help="Address of the web UI: 0.0.0.0 only in a container publishing it on 127.0.0.1.")
]
OutOpt = Annotated[Path, typer.Option(help="Results directory; the run goes into <out>/<run-id>/.")]
RunIdOpt = Annotated[str | None, typer.Option(help="Name of the run (default: the UTC time).")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the arrival times and the bootstrap.")]


def bench_plan(models: list[str], targets: list, load: str, concurrency: str | None, rate: str | None,
               arrival: str, p99_bound_ms: float, start_rate: float, max_probes: int, batch_size: int,
               timeout: float, warmup: float, window: float, min_windows: int, max_windows: int,
               tolerance: float, workers: int, ui: bool, ui_port: int, ui_host: str, seed: int):  # fmt: skip
    """The benchmark plan from the command line, with one clear line for each bad value.

    Every value is checked (bounds and finiteness, even of options this load does not use) before the load
    generator is imported: nothing is started or measured with a bad one.
    """
    from serveoff.loadtest.plan import SearchPolicy, WindowPolicy, check, load_points

    for flag, value in {"--batch-size": batch_size, "--timeout": timeout, "--workers": workers,
                        "--ui-port": ui_port, "--seed": seed}.items():  # fmt: skip
        check(flag, value)
    points = load_points(load, concurrency, rate, arrival)
    search = SearchPolicy(p99_bound_ms, start_rate, max_probes, arrival=arrival)
    search.validate()
    policy = WindowPolicy(warmup, window, min_windows, max_windows, tolerance=tolerance)
    policy.validate()
    from serveoff.loadtest.bench import BenchPlan  # imports locust, which monkey-patches the process

    return BenchPlan(
        models=models, targets=targets, points=points,
        policy=policy, search=search if load == "search" else None,
        batch_size=batch_size, timeout_s=timeout, workers=workers, ui_port=ui_port if ui else None,
        ui_host=ui_host, seed=seed,
    )  # fmt: skip


def new_run_dir(out: Path, run_id: str | None) -> Path:
    """``out/<run-id>``, created now and never one that exists (results are never overwritten). The default
    id is the UTC time, then ``-2``, ``-3``, ... for other runs started in the same second."""
    from datetime import UTC, datetime
    from itertools import chain, count

    if run_id is not None and ("/" in run_id or run_id in ("", ".", "..")):
        raise ServeoffError(f"--run-id {run_id!r} must be a plain name")
    if out.exists() and not out.is_dir():
        raise ServeoffError(f"--out {out} is a file, not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if run_id is not None:
            if not _claimed(out / run_id):
                raise ServeoffError(f"{out / run_id} already exists; choose another --run-id")
            return (out / run_id).resolve()
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        names = chain([stamp], (f"{stamp}-{n}" for n in count(2)))
        return (out / next(name for name in names if _claimed(out / name))).resolve()
    except (OSError, ValueError) as err:
        why = getattr(err, "strerror", None) or err
        raise ServeoffError(f"cannot create a run directory in {out}: {why}; choose another --out") from None


def _claimed(path: Path) -> bool:
    """Create directory ``path``; ``False`` if it exists (atomic: of two runs wanting a name, one gets it)."""
    try:
        path.mkdir()
    except FileExistsError:
        return False
    return True


def measure_and_report(plan, records: list, artifacts: Path, run_dir: Path) -> None:
    """Run the benchmark with a progress display and print where the results are."""
    from serveoff.loadtest.bench import run_bench
    from serveoff.loadtest.progress import BenchProgress
    from serveoff.signals import deferred

    if plan.ui_port is not None:
        console.print(f"locust web UI: http://127.0.0.1:{plan.ui_port}", markup=False)
    try:
        results = run_bench(plan, records, artifacts, run_dir, BenchProgress(console))
        typer.echo(f"results: {results.path}")
    finally:
        with deferred():  # stopped (SIGTERM, say) or not, the report of what was measured is written
            _report_measured(run_dir)
            if not any(run_dir.iterdir()):  # nothing was measured: the run id stays free
                run_dir.rmdir()


def _report_measured(run_dir: Path) -> None:
    """Write the report of whatever the run measured; a report that fails never hides the results."""
    from serveoff.loadtest.results import RESULTS_FILE

    if not (run_dir / RESULTS_FILE).exists():
        return
    try:
        from serveoff.report.document import build_report, write_report
        from serveoff.report.runs import load_run

        html, md = write_report(build_report(load_run(run_dir)))
    except Exception as err:  # the measurement stands; say how to retry the report
        console.print(f"serveoff: warning: report not written ({err}); retry: serveoff report {run_dir}",
                      markup=False)  # fmt: skip
        return
    typer.echo(f"report: {html} (summary: {md.name})")


@app.command()
def bench(
    model: ModelOpt = None,
    target: TargetOpt = None,
    load: LoadOpt = "closed",
    concurrency: ConcurrencyOpt = None,
    rate: RateOpt = None,
    arrival: ArrivalOpt = "poisson",
    p99_bound_ms: BoundOpt = 100.0,
    start_rate: StartRateOpt = 10.0,
    max_probes: ProbesOpt = 10,
    batch_size: BatchOpt = 1,
    timeout: TimeoutOpt = 10.0,
    warmup: WarmupOpt = 2.0,
    window: WindowOpt = 3.0,
    min_windows: MinWindowsOpt = 3,
    max_windows: MaxWindowsOpt = 8,
    tolerance: ToleranceOpt = 0.1,
    workers: WorkersOpt = 0,
    ui: UiOpt = False,
    ui_port: UiPortOpt = 8089,
    ui_host: UiHostOpt = "127.0.0.1",
    out: OutOpt = DEFAULT_RESULTS,
    run_id: RunIdOpt = None,
    seed: SeedOpt = 0,
    state: Annotated[Path, typer.Option(help="The servers `serveoff up` recorded.")] = DEFAULT_STATE,
    stack: Annotated[
        Path | None,
        typer.Option(help="Bench the servers of this docker compose stack (what `serveoff prepare` wrote)."),
    ] = None,
    docker: DockerOpt = False,
    server: ServerOpt = None,
    memory: MemoryOpt = DEFAULT_MEMORY,
    image: ImageOpt = None,
    mount: MountOpt = None,
    preset: PresetOpt = "matched",
    cpus: CpusOpt = None,
    instances: InstancesOpt = None,
    threads: ThreadsOpt = None,
    max_batch_size: MaxBatchOpt = None,
    batch_timeout_ms: BatchTimeoutOpt = None,
    artifacts: Annotated[Path, typer.Option(help="Artifacts for baseline-only runs.")] = DEFAULT_ARTIFACTS,
) -> None:
    """Load-test servers and the in-process baselines into results.json, then write the report.

    The servers are those `serveoff up` started, those of a compose stack (--stack), or, with --docker,
    containers this command starts from the servers' images and removes at the end.
    """
    from serveoff.loadtest.bench import default_targets, model_layouts
    from serveoff.serving import fleet
    from serveoff.serving.targets import parse_target

    if docker and stack:
        raise ServeoffError("use --docker (serveoff starts containers) or --stack (compose did), not both")
    starting = {"--server": server, "--cpus": cpus, "--instances": instances, "--threads": threads,
                "--max-batch-size": max_batch_size, "--batch-timeout-ms": batch_timeout_ms,
                "--preset": None if preset == "matched" else preset,
                "--memory": None if memory == DEFAULT_MEMORY else memory,
                "--image": image, "--mount": mount}  # fmt: skip
    given = [flag for flag, value in starting.items() if value is not None]
    if given and not docker:
        raise ServeoffError(f"{', '.join(given)} set up servers bench starts, so only with --docker; running "
                            "servers keep the setting they were started with")  # fmt: skip
    chosen = [parse_target(t) for t in dict.fromkeys(target)] if target else None
    plan = bench_plan(model or [], chosen or [], load, concurrency, rate, arrival, p99_bound_ms, start_rate,
                      max_probes, batch_size, timeout, warmup, window, min_windows, max_windows, tolerance,
                      workers, ui, ui_port, ui_host, seed)  # fmt: skip
    if docker:
        from serveoff.serving.container import container_options

        options = container_options(memory, image or [], mount or [])
        plan.models = _models(model, artifacts)
        config = setting(preset, cpus, instances, threads, max_batch_size, batch_timeout_ms, docker=True)
        check_batch_fits(plan.batch_size, config)
        servers = checked_servers(server, docker=True, options=options)
        run_started(servers, plan, config, options, artifacts, new_run_dir(out, run_id), baselines=True)
        return
    if stack is not None:
        from serveoff.serving.stack import attach

        records = attach(stack)
    else:
        records = [rec for rec in fleet.read_state(state) if fleet.running(rec)]
    if not chosen and not records:
        raise ServeoffError(
            f"no server recorded in {state} is running: start them with `serveoff up --native`, use "
            "`serveoff run` or `serveoff bench --docker`, or bench the baselines alone with --target "
            "torch:inprocess"
        )
    served = [name for rec in records for name in rec.models]
    plan.models = list(dict.fromkeys(model or served[:1] or ["digits-mlp"]))
    plan.targets = chosen or default_targets(records, model_layouts(plan.models, records, artifacts))
    measure_and_report(plan, records, artifacts, new_run_dir(out, run_id))


@app.command()
def run(
    model: ModelOpt = None,
    server: ServerOpt = None,
    baselines: Annotated[bool, typer.Option(help="Also measure the in-process baselines.")] = True,
    load: LoadOpt = "closed",
    concurrency: ConcurrencyOpt = None,
    rate: RateOpt = None,
    arrival: ArrivalOpt = "poisson",
    p99_bound_ms: BoundOpt = 100.0,
    start_rate: StartRateOpt = 10.0,
    max_probes: ProbesOpt = 10,
    batch_size: BatchOpt = 1,
    timeout: TimeoutOpt = 10.0,
    warmup: WarmupOpt = 2.0,
    window: WindowOpt = 3.0,
    min_windows: MinWindowsOpt = 3,
    max_windows: MaxWindowsOpt = 8,
    tolerance: ToleranceOpt = 0.1,
    workers: WorkersOpt = 0,
    ui: UiOpt = False,
    ui_port: UiPortOpt = 8089,
    ui_host: UiHostOpt = "127.0.0.1",
    out: OutOpt = DEFAULT_RESULTS,
    run_id: RunIdOpt = None,
    seed: SeedOpt = 0,
    artifacts: Annotated[Path, typer.Option(help="Artifacts directory (missing models are built).")] = (
        DEFAULT_ARTIFACTS
    ),
    preset: PresetOpt = "matched",
    cpus: CpusOpt = None,
    instances: InstancesOpt = None,
    threads: ThreadsOpt = None,
    max_batch_size: MaxBatchOpt = None,
    batch_timeout_ms: BatchTimeoutOpt = None,
) -> None:
    """Build, start the servers natively, benchmark them and the baselines, and stop everything
    (`serveoff bench --docker` does the same with the servers' Docker images)."""
    config = setting(preset, cpus, instances, threads, max_batch_size, batch_timeout_ms)
    servers = checked_servers(server, docker=False)
    models = _models(model, artifacts)
    plan = bench_plan(models, [], load, concurrency, rate, arrival, p99_bound_ms, start_rate, max_probes,
                      batch_size, timeout, warmup, window, min_windows, max_windows, tolerance,
                      workers, ui, ui_port, ui_host, seed)  # fmt: skip
    check_batch_fits(plan.batch_size, config)
    run_started(servers, plan, config, None, artifacts, new_run_dir(out, run_id), baselines)


def _models(names: list[str] | None, artifacts: Path) -> list[str]:
    """The models named (default: digits-mlp), in order, once, each checked to be a zoo model or one of
    your own built into ``artifacts``."""
    from serveoff.models.zoo import check_servable

    return [check_servable(name, artifacts) for name in dict.fromkeys(names or ["digits-mlp"])]


def run_started(servers: list[str], plan, config, docker, artifacts: Path, run_dir: Path,
                baselines: bool) -> None:  # fmt: skip
    """Build what is missing, start ``servers`` on free ports (in containers with ``docker``'s options),
    measure ``plan`` against them (every protocol, and the baselines unless told not to; only
    ``plan.targets`` when it names some) and stop them, whatever happens."""
    from serveoff.loadtest.bench import default_targets
    from serveoff.serving import fleet
    from serveoff.serving.process import free_port_base
    from serveoff.serving.targets import server_class
    from serveoff.signals import deferred

    layouts = ensure_built(plan.models, artifacts)
    started = []
    try:
        for name in servers:  # on free ports: servers of `serveoff up` may hold the default ones
            cls = server_class(name)
            port_base = free_port_base(cls.port_count)
            started.append(fleet.launch(cls, layouts, config, run_dir / "servers" / name, port_base, docker))
            started[-1].start()
        records = [fleet.record(each) for each in started]
        fleet.write_state(run_dir / "servers.json", records)  # `serveoff down --state` finds them
        if not plan.targets:
            plan.targets = [t for t in default_targets(records, layouts) if baselines or not t.is_baseline]
        measure_and_report(plan, records, artifacts, run_dir)
    finally:
        with deferred():  # a stop signal now waits until every server is stopped
            for each in started:
                each.stop()
            (run_dir / "servers.json").unlink(missing_ok=True)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `serveoff bench` or `run`.")],
    baseline: Annotated[
        Path | None, typer.Option(help="A run of the same plan to compare with, under the gate's rules.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="The HTML file (default: RUN_DIR/report.html); the Markdown summary goes beside it."
        ),
    ] = None,
    claims: Annotated[
        list[Path] | None,
        typer.Option("--claims", help="Your own claims file, added to the built-in ledger (repeatable)."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Gate rules for --baseline and the verdicts' error-rate limit (default: built-in)"),
    ] = None,
) -> None:
    """Write a self-contained HTML report (plots, fairness, claims, manifest) and a Markdown summary."""
    from serveoff.report.document import build_report, write_report
    from serveoff.report.runs import load_run

    run = load_run(run_dir)
    base = load_run(baseline) if baseline is not None else None
    html, md = write_report(build_report(run, base, claims, rules), out)
    typer.echo(f"report: {html}")
    typer.echo(f"summary: {md}")


@app.command()
def gate(
    run_dirs: Annotated[list[Path], typer.Argument(help="The run to judge (several: repeats of it).")],
    baseline: Annotated[
        list[Path], typer.Option(help="The run it must not regress from, same plan (repeatable: repeats).")
    ],
    rules: Annotated[Path | None, typer.Option(help="Gate rules YAML (default: the built-in ones).")] = None,
    junit: Annotated[Path | None, typer.Option(help="Also write the checks as JUnit XML here.")] = None,
) -> None:
    """Print the checks; fail (exit 1) on a regression, too many failed requests or a run that stopped early.

    With repeats on either side, the intervals include the drift between runs, not only between windows.
    """
    from serveoff.report.gate import load_rules, run_gate, table, write_junit
    from serveoff.report.runs import load_run

    gate_rules = load_rules(rules)
    runs, bases = [load_run(d) for d in run_dirs], [load_run(d) for d in baseline]
    result = run_gate(runs, bases, gate_rules)
    for line in [*result.warnings, *(point.describe() for point in result.unmatched)]:
        console.print(f"serveoff: warning: {line}", markup=False)
    typer.echo(table(result.checks))
    for line in result.failures:
        typer.echo(f"gate: FAIL: {line}")
    typer.echo(result.verdict())
    if junit is not None:
        write_junit(result, junit)  # one line and exit 2 when it cannot be written, after the verdict
    raise typer.Exit(0 if result.passed else 1)


def ensure_built(names: list[str], artifacts: Path) -> list:
    """The artifact layouts of ``names``: zoo models, building the missing or outdated ones, and models of
    your own, as `serveoff build --name` built them. Every name is checked before anything is built."""
    from serveoff.models.build import ready_layout
    from serveoff.models.zoo import check_servable

    names = [check_servable(n, artifacts) for n in dict.fromkeys(names)]
    return [ready_layout(n, artifacts, log=console.print) for n in names]


LOAD_COMMANDS = ("bench", "run")  # they run locust, which needs gevent's monkey-patching before any import


def main() -> None:
    """Entry point: every ServeoffError becomes one line on stderr and a non-zero exit; SIGINT, SIGTERM and
    SIGHUP stop any command cleanly (servers stopped, results kept) with one line and exit 128 + signal."""
    if any(arg in LOAD_COMMANDS for arg in sys.argv[1:2]):
        from gevent import monkey

        monkey.patch_all()
    from serveoff.errors import Stopped
    from serveoff.logs import log_path, quiet_libraries
    from serveoff.signals import stop_on_signals

    say = partial(console.print, markup=False)
    try:  # the libraries' own messages (TensorFlow, absl, locust) go to a log file, named once
        with quiet_libraries(log_path(sys.argv), say), stop_on_signals():
            app()
    except ServeoffError as err:
        console.print(f"serveoff: error: {err}", markup=False)
        sys.exit(err.exit_code)
    except Stopped as stop:
        console.print(f"serveoff: {stop}", markup=False)
        sys.exit(stop.exit_code)
