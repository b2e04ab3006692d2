"""What the commands do, once their options are checked values: build, start servers, measure, report.

The command line (``serveoff.cli``) parses options into the groups of ``serveoff.options`` and calls one
function here per command. Stdout gets what a command produced (paths, endpoints); stderr, through
``console``, its progress and warnings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from serveoff.errors import ServeoffError
from serveoff.options import DEFAULT_MODEL, DEFAULT_WORKDIR, OutputOptions, OwnModelOptions, ServerOptions

if TYPE_CHECKING:
    from serveoff.loadtest.bench import BenchPlan
    from serveoff.loadtest.probes.context import ProbeSettings
    from serveoff.models.artifacts import ArtifactLayout
    from serveoff.serving.container import ContainerOptions
    from serveoff.serving.fleet import Record
    from serveoff.serving.resources import ServerConfig
    from serveoff.serving.targets import Target

console = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(line: str) -> None:
    """One warning line on stderr."""
    console.print(f"serveoff: warning: {line}", markup=False)


def list_models() -> None:
    """Print the model zoo, one model a line, with its wire format."""
    from serveoff.models.zoo import DEFAULT_MODELS, ZOO, architecture

    for name in ZOO:
        arch = architecture(name)
        default = " (default)" if name in DEFAULT_MODELS else ""
        wire = f"{arch.input.dtype}[n,{','.join(map(str, arch.input.shape))}]"
        typer.echo(f"{name:<18} {wire:<22} -> {arch.num_classes:>2} logits  {arch.description}{default}")


def build_models(names: list[str] | None, own: OwnModelOptions, out: Path, atol: float, seed: int) -> None:
    """Build zoo models ``names`` (default: the benchmark's), or your own model (``own``), into ``out``;
    every value is checked first."""
    given = [flag for flag, value in _own_flags(own).items() if value is not None]
    if given and names:
        raise ServeoffError(
            "use either --model (zoo) or --torchscript/--savedmodel/--sample-inputs/--name, not both"
        )
    if given and len(given) < len(_own_flags(own)):
        missing = ", ".join(flag for flag in _own_flags(own) if flag not in given)
        raise ServeoffError(f"bringing your own model also needs {missing}")
    if not 0 < atol < 1:  # NaN fails this too
        raise ServeoffError(f"--atol must be a finite number above 0 and below 1, got {atol}")
    if not 0 <= seed < 2**32:
        raise ServeoffError(f"--seed must be from 0 to {2**32 - 1}, got {seed}")

    from serveoff.models.zoo import DEFAULT_MODELS, check_known

    zoo = [] if given else [check_known(each) for each in dict.fromkeys(names or DEFAULT_MODELS)]
    from serveoff.models import build as builder

    log = console.print
    if given:
        results = [builder.build_user_model(own.name, own.torchscript, own.savedmodel, own.sample_inputs, out,
                                            atol=atol, log=log)]  # fmt: skip
    else:
        results = [builder.build_zoo_model(each, out, seed=seed, atol=atol, log=log) for each in zoo]
    for result in results:
        typer.echo(f"{result.name}: {result.root}")


def _own_flags(own: OwnModelOptions) -> dict[str, object]:
    """Each option of your own model by its flag."""
    return {"--torchscript": own.torchscript, "--savedmodel": own.savedmodel,
            "--sample-inputs": own.sample_inputs, "--name": own.name}  # fmt: skip


def served_models(names: list[str] | None, artifacts: Path) -> list[str]:
    """The models named (default: digits-mlp), in order, once, each checked to be a zoo model or one of
    your own built into ``artifacts``."""
    from serveoff.models.zoo import check_servable

    return [check_servable(name, artifacts) for name in dict.fromkeys(names or [DEFAULT_MODEL])]


def ensure_built(names: list[str], artifacts: Path) -> list[ArtifactLayout]:
    """The artifact layouts of ``names``: zoo models, building the missing or outdated ones, and models of
    your own, as `serveoff build --name` built them. Every name is checked before anything is built."""
    from serveoff.models.build import ready_layout
    from serveoff.models.zoo import check_servable

    names = [check_servable(n, artifacts) for n in dict.fromkeys(names)]
    return [ready_layout(n, artifacts, log=console.print) for n in names]


def fair_setting(options: ServerOptions, docker: bool = False) -> ServerConfig:
    """The one fair ``ServerConfig``; one clear line for each bad value.

    With ``docker``, CPU sets are checked against the Docker engine's CPUs, not this process's; every
    value is checked first against this machine (whose CPUs the engine cannot outnumber), before the
    engine is asked.
    """
    if not docker:
        return options.config()
    from serveoff.serving.container import engine_cpus

    options.config(tuple(range(os.cpu_count() or 1)))
    return options.config(engine_cpus())


def named_servers(names: list[str] | None, config: ServerConfig) -> list[str]:
    """The servers asked for (default: all), once each, each checked to honour ``config``."""
    from serveoff.serving.targets import SERVERS, server_class

    servers = list(dict.fromkeys(names or SERVERS))
    for name in servers:
        server_class(name).check_config(config)
    return servers


def checked_servers(
    names: list[str] | None, config: ServerConfig, containers: ContainerOptions | None = None
) -> list[str]:
    """The servers asked for (default: all), each checked to be runnable here and to honour ``config``
    before anything starts; in containers (``containers``), also their images and memory limit."""
    from serveoff.serving.container import check_images
    from serveoff.serving.targets import server_class

    servers = named_servers(names, config)
    if containers is not None:
        check_images(servers, containers)  # the engine answers, and every image is here
        return servers
    for name in servers:
        server_class(name).check_installed()
    return servers


def parse_targets(names: list[str] | None) -> list[Target]:
    """The targets named, once each, in order; one clear line for an unknown one."""
    from serveoff.serving.targets import parse_target

    return [parse_target(name) for name in dict.fromkeys(names or [])]


def check_started(targets: list[Target], servers: list[str]) -> None:
    """Each server target names a server this run starts; one clear line before anything starts if not."""
    for target in targets:
        if not target.is_baseline and target.system not in servers:
            raise ServeoffError(f"target {target.name} needs {target.system}, which this run does not start: "
                                f"add --server {target.system}")  # fmt: skip


def start_up(servers: list[str], models: list[str], config: ServerConfig, containers: ContainerOptions | None,
             artifacts: Path, state: Path) -> None:  # fmt: skip
    """`serveoff up`: build what is missing, start ``servers`` on their own ports (in containers with
    ``containers``), record them in ``state`` and print their endpoints."""
    from serveoff.serving import fleet

    fleet.check_none_running(state)  # before building anything
    layouts = ensure_built(models, artifacts)
    workdir = DEFAULT_WORKDIR.resolve()
    records = fleet.start_servers(servers, layouts, config, workdir, state, docker=containers)
    for rec in records:
        where = f"container {rec.container[:12]}" if rec.container else "native"
        typer.echo(f"{rec.server} ({where}): REST {rec.endpoints.rest}  gRPC {rec.endpoints.grpc}  "
                   f"metrics {rec.endpoints.metrics}  models {', '.join(rec.models)}")  # fmt: skip
    typer.echo(f"stop them with: serveoff down (recorded in {state})")


def stop_down(state: Path) -> None:
    """`serveoff down`: stop what `serveoff up` recorded in ``state``."""
    from serveoff.serving import fleet

    stopped = fleet.stop_servers(state)
    typer.echo("stopped " + ", ".join(stopped) if stopped else "no server of serveoff was running")


@dataclass(frozen=True)
class StackRequest:
    """What `serveoff prepare` writes: the models' launch files under ``stack``, from one setting."""

    models: list[str]
    servers: list[str]
    artifacts: Path
    config: ServerConfig
    cpus: str | None  # as given, for the summary line
    memory: str
    loadgen_cpus: str | None
    stack: Path


def prepare_stack(request: StackRequest) -> None:
    """Check the memory limit and the load generator's CPUs, build the missing models and write every
    server's configuration and launch script for docker compose."""
    from serveoff.serving.container import parse_memory
    from serveoff.serving.stack import loadgen_overlap, write_stack

    parse_memory(request.memory)
    shared = loadgen_overlap(request.loadgen_cpus, request.config) if request.loadgen_cpus else []
    if shared:
        warn(f"the load generator shares CPUs {shared} with the servers and takes CPU from the server it "
             "measures; give SERVEOFF_LOADGEN_CPUS other CPUs than SERVEOFF_SERVER_CPUS")  # fmt: skip
    layouts = ensure_built(request.models, request.artifacts)
    path = write_stack(layouts, request.config, request.stack, request.servers)
    typer.echo(f"stack: {path} (models {', '.join(request.models)}; CPUs {request.cpus or 'all'}, "
               f"memory {request.memory})")  # fmt: skip


def bench_running(plan: BenchPlan, state: Path, stack: Path | None, artifacts: Path,
                  output: OutputOptions) -> None:  # fmt: skip
    """`serveoff bench`: measure the servers `serveoff up` recorded in ``state`` (or those of the compose
    ``stack``) and the baselines; ``plan``'s models and targets default to what those servers serve."""
    from serveoff.loadtest.bench import default_targets, model_layouts
    from serveoff.serving import fleet

    if stack is not None:
        from serveoff.serving.stack import attach

        records = attach(stack)
    else:
        records = [rec for rec in fleet.read_state(state) if fleet.running(rec)]
    if not plan.targets and not records:
        raise ServeoffError(
            f"no server recorded in {state} is running: start them with `serveoff up --native`, measure "
            "with `serveoff run` (natively, or --docker), or bench the baselines alone with --target "
            "torch:inprocess"
        )
    served = [name for rec in records for name in rec.models]
    plan.models = list(dict.fromkeys(plan.models or served[:1] or [DEFAULT_MODEL]))
    plan.targets = plan.targets or default_targets(records, model_layouts(plan.models, records, artifacts))
    measure_and_report(plan, records, artifacts, new_run_dir(output.out, output.run_id))


def run_started(servers: list[str], plan: BenchPlan, config: ServerConfig,
                containers: ContainerOptions | None, artifacts: Path, output: OutputOptions,
                baselines: bool = True) -> None:  # fmt: skip
    """`serveoff run`: build what is missing, start ``servers`` on free ports (in containers with
    ``containers``), measure ``plan`` against them (every protocol, and the baselines unless told not to;
    only ``plan.targets`` when it names some) and stop them, whatever happens."""
    from serveoff.loadtest.bench import default_targets
    from serveoff.serving import fleet
    from serveoff.serving.process import free_port_base
    from serveoff.serving.targets import server_class
    from serveoff.signals import deferred

    run_dir = new_run_dir(output.out, output.run_id)
    layouts = ensure_built(plan.models, artifacts)
    started = []
    try:
        for name in servers:  # on free ports: servers of `serveoff up` may hold the default ones
            cls = server_class(name)
            port_base = free_port_base(cls.port_count)
            workdir = run_dir / "servers" / name
            started.append(fleet.launch(cls, layouts, config, workdir, port_base, containers))
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


def measure_and_report(plan: BenchPlan, records: list[Record], artifacts: Path, run_dir: Path) -> None:
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
        warn(f"report not written ({err}); retry: serveoff report {run_dir}")
        return
    typer.echo(f"report: {html} (summary: {md.name})")


def write_run_report(run_dir: Path, baseline: Path | None, out: Path | None, claims: list[Path] | None,
                     rules: Path | None) -> None:  # fmt: skip
    """`serveoff report`: the HTML report and the Markdown summary of ``run_dir``."""
    from serveoff.report.document import build_report, write_report
    from serveoff.report.runs import load_run

    run = load_run(run_dir)
    base = load_run(baseline) if baseline is not None else None
    html, md = write_report(build_report(run, base, claims, rules), out)
    typer.echo(f"report: {html}")
    typer.echo(f"summary: {md}")


def judge(run_dirs: list[Path], baselines: list[Path], rules: Path | None, junit: Path | None) -> bool:
    """`serveoff gate`: print the checks and the verdict (and write JUnit XML); whether the run passed."""
    from serveoff.report.gate import load_rules, run_gate, table, write_junit
    from serveoff.report.runs import load_run

    gate_rules = load_rules(rules)
    runs, bases = [load_run(d) for d in run_dirs], [load_run(d) for d in baselines]
    result = run_gate(runs, bases, gate_rules)
    for line in [*result.warnings, *(point.describe() for point in result.unmatched)]:
        warn(line)
    typer.echo(table(result.checks))
    for line in result.failures:
        typer.echo(f"gate: FAIL: {line}")
    typer.echo(result.verdict())
    if junit is not None:
        write_junit(result, junit)  # one line and exit 2 when it cannot be written, after the verdict
    return result.passed


def probe_servers(servers: list[str], models: list[str], config: ServerConfig, settings: ProbeSettings,
                  containers: ContainerOptions | None, artifacts: Path, output: OutputOptions,
                  beside: Path | None) -> None:  # fmt: skip
    """`serveoff probe`: build what is missing, then launch each server fresh per model (in a container
    with ``containers``), run the six production-readiness probes against it and stop it; ``probes.json``
    goes into a new run directory, or ``beside`` a run's results.json (whose report is then written again
    with the readiness section)."""
    from serveoff.loadtest.probes.battery import Battery, run_battery

    layouts = ensure_built(models, artifacts)
    run_dir = beside.resolve() if beside is not None else new_run_dir(output.out, output.run_id)
    doc = run_battery(Battery(servers, layouts, config, settings, run_dir, containers), console.print)
    typer.echo(f"probes: {run_dir / 'probes.json'} ({len(doc.results)} probe results)")
    if beside is not None:
        _report_measured(run_dir)
