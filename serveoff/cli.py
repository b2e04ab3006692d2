"""The ``serveoff`` command: each command parses its options into the groups of ``serveoff.options`` and
calls ``serveoff.app``, which does the work."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from serveoff import app as work
from serveoff.app import console
from serveoff.errors import ServeoffError
from serveoff.loadtest.probes.options import ProbeOptions
from serveoff.options import (
    DEFAULT_ARTIFACTS,
    DEFAULT_MEMORY,
    DEFAULT_STATE,
    BaselinesOpt,
    BuildArtifactsOpt,
    BuildModelOpt,
    ContainerFlags,
    Hidden,
    LoadPlanOptions,
    ModelOpt,
    NativeOpt,
    OutputOptions,
    OwnModelOptions,
    RecordedStateOpt,
    ServeModelOpt,
    ServerOpt,
    ServerOptions,
    StackLoadgenOpt,
    StackMemoryOpt,
    StackOpt,
    StartOptions,
    StateOpt,
    TargetOpt,
    changed,
    grouped,
)
from serveoff.serving.resources import check_batch_fits

app = typer.Typer(
    help="The same trained model on every model server serveoff knows, measured side by side.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def models() -> None:
    """List the model zoo (the names `serveoff build --model` takes)."""
    work.list_models()


@app.command()
@grouped
def build(
    *,
    model: BuildModelOpt = None,
    out: Annotated[Path, typer.Option(help="Artifacts directory.")] = DEFAULT_ARTIFACTS,
    own: OwnModelOptions,
    atol: Annotated[float, typer.Option(help="Parity tolerance: max abs difference of the outputs.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for data, initialisation and training of zoo models.")] = 0,
) -> None:
    """Build each model's artifacts for every server and in-process runtime, and prove they compute the
    same function."""
    work.build_models(model, own, out, atol, seed)


@app.command()
@grouped
def up(
    *,
    model: ServeModelOpt = None,
    server: ServerOpt = None,
    native: NativeOpt = False,
    containers: ContainerFlags,
    artifacts: BuildArtifactsOpt = DEFAULT_ARTIFACTS,
    setting: ServerOptions,
    state: StateOpt = DEFAULT_STATE,
) -> None:
    """Start model servers by hand; `serveoff down` stops exactly what this started."""
    if native == containers.docker:
        raise ServeoffError("say where the servers run: --native (local processes) or --docker (images)")
    options = containers.options()
    models = work.served_models(model, artifacts)
    config = work.fair_setting(setting, containers.docker)
    servers = work.checked_servers(server, config, options)
    work.start_up(servers, models, config, options, artifacts, state)


@app.command()
def down(
    state: Annotated[Path, typer.Option(help="The record `serveoff up` wrote.")] = DEFAULT_STATE,
) -> None:
    """Stop the servers `serveoff up` started (by their recorded PIDs or container IDs)."""
    work.stop_down(state)


@app.command()
@grouped
def prepare(
    *,
    model: ServeModelOpt = None,
    server: ServerOpt = None,
    stack: Annotated[Path, typer.Option(help="Where each server's launch files go.")] = Path("stack"),
    artifacts: BuildArtifactsOpt = DEFAULT_ARTIFACTS,
    memory: StackMemoryOpt = DEFAULT_MEMORY,
    setting: ServerOptions,
    loadgen_cpus: StackLoadgenOpt = None,
) -> None:
    """For docker compose: build the missing models, then write every server's configuration and launch
    script into STACK, from one fair setting. Every value is checked before anything is built."""
    config = work.fair_setting(setting)
    models = work.served_models(model, artifacts)
    servers = work.named_servers(server, config)
    request = work.StackRequest(models, servers, artifacts, config, setting.cpus, memory, loadgen_cpus, stack)
    work.prepare_stack(request)


@app.command()
@grouped
def bench(
    *,
    model: ModelOpt = None,
    target: TargetOpt = None,
    load: LoadPlanOptions,
    output: OutputOptions,
    state: RecordedStateOpt = DEFAULT_STATE,
    stack: StackOpt = None,
    artifacts: Annotated[Path, typer.Option(help="Artifacts for baseline-only runs.")] = DEFAULT_ARTIFACTS,
    moved: Annotated[StartOptions, Hidden()],
) -> None:
    """Load-test running servers and the in-process baselines into results.json, then write the report.

    The servers are those `serveoff up` started, or those of a compose stack (--stack); `serveoff run`
    starts servers (natively, or with --docker), measures them and stops them.
    """
    if moved.containers.docker:
        raise ServeoffError("bench measures running servers; to start the servers' images, measure them and "
                            "remove them, use `serveoff run --docker`")  # fmt: skip
    given = changed(moved)
    if given:
        verb = "sets" if len(given) == 1 else "set"
        raise ServeoffError(f"{', '.join(given)} {verb} up the servers `serveoff run` starts (natively, or "
                            "with --docker); running servers keep the setting they were started "
                            "with")  # fmt: skip
    plan = load.plan(model or [], work.parse_targets(target))
    work.bench_running(plan, state, stack, artifacts, output)


@app.command()
@grouped
def run(
    *,
    model: ModelOpt = None,
    target: TargetOpt = None,
    baselines: BaselinesOpt = True,
    load: LoadPlanOptions,
    output: OutputOptions,
    artifacts: BuildArtifactsOpt = DEFAULT_ARTIFACTS,
    start: StartOptions,
) -> None:
    """Build, start the servers (natively, or with --docker from their images), benchmark them and the
    baselines, and stop everything."""
    options = start.containers.options()
    models = work.served_models(model, artifacts)
    plan = load.plan(models, work.parse_targets(target))
    config = work.fair_setting(start.setting, start.containers.docker)
    check_batch_fits(plan.batch_size, config)
    servers = work.checked_servers(start.server, config, options)
    work.check_started(plan.targets, servers)
    work.run_started(servers, plan, config, options, artifacts, output, baselines)


@app.command()
@grouped
def probe(
    *,
    model: ServeModelOpt = None,
    server: ServerOpt = None,
    artifacts: BuildArtifactsOpt = DEFAULT_ARTIFACTS,
    setting: ServerOptions,
    containers: ContainerFlags,
    output: OutputOptions,
    durations: ProbeOptions,
) -> None:
    """Production readiness, measured: cold start, overload, bad input, process failure, model update under
    load and soak, against each server launched fresh per model (natively, or with --docker from its
    image); writes probes.json."""
    settings = durations.settings()
    options = containers.options()
    models = work.served_models(model, artifacts)
    config = work.fair_setting(setting, containers.docker)
    servers = work.checked_servers(server, config, options)
    work.probe_servers(servers, models, config, settings, options, artifacts, output, durations.beside)


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
    work.write_run_report(run_dir, baseline, out, claims, rules)


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
    raise typer.Exit(0 if work.judge(run_dirs, baseline, rules, junit) else 1)


# they run locust, which needs gevent's monkey-patching before any import
LOAD_COMMANDS = ("bench", "run", "probe")


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
