"""The command line's options, each declared once, and the groups commands share.

A group is a dataclass whose fields are typer options or other groups (``ServerOptions``, ``ContainerFlags``,
``StartOptions``, ``LoadPlanOptions``, ``OutputOptions``, ``OwnModelOptions``); a command decorated with
``grouped`` takes a group as one parameter and gets every one of its options, in that place of its
``--help``. Help texts that
list servers, targets, runtimes, presets or models are read from their registries, so a new server appears
here without an edit.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from copy import copy
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints

import typer

from serveoff.errors import ServeoffError
from serveoff.models.zoo import DEFAULT_MODELS
from serveoff.serving.resources import PRESETS, parse_cpus, server_config
from serveoff.serving.targets import ALL_TARGETS, SERVERS

if TYPE_CHECKING:
    from serveoff.loadtest.bench import BenchPlan
    from serveoff.serving.container import ContainerOptions
    from serveoff.serving.resources import ServerConfig
    from serveoff.serving.targets import Target

DEFAULT_ARTIFACTS = Path("artifacts")
DEFAULT_STATE = Path(".serveoff/servers.json")
DEFAULT_WORKDIR = Path(".serveoff/servers")
DEFAULT_RESULTS = Path("results")
DEFAULT_MEMORY = "4g"  # each server container's memory limit
DEFAULT_MODEL = "digits-mlp"  # what is served and measured when no --model is given


def either(names: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: a choice as help texts write it."""
    names = list(names)
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


SERVER_TARGETS = [t.name for t in ALL_TARGETS if not t.is_baseline]
RUNTIME_TARGETS = [t.name for t in ALL_TARGETS if t.is_baseline]

# Options that stand alone.
BuildModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model", "-m", help=f"Zoo model to build (repeatable; default: {', '.join(DEFAULT_MODELS)})."
    ),
]
ServeModelOpt = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help=f"Model to serve (repeatable; default: {DEFAULT_MODEL})."),
]
ModelOpt = Annotated[list[str] | None, typer.Option("--model", "-m", help="Model to benchmark (repeatable).")]
ServerOpt = Annotated[
    list[str] | None,
    typer.Option("--server", "-s", help=f"{either(SERVERS)} (repeatable; default: every one)."),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help=f"{', '.join(SERVER_TARGETS)}, or an in-process runtime: "
                 f"{', '.join(RUNTIME_TARGETS)} (repeatable; default: every running server's protocols and "
                 "every in-process runtime installed and built)."),
]  # fmt: skip
DockerOpt = Annotated[
    bool,
    typer.Option("--docker", help="Run the servers from their Docker images (the same CPU set and memory "
                 "limit for each, ports on 127.0.0.1 only)."),
]  # fmt: skip
NativeOpt = Annotated[bool, typer.Option("--native", help="Run the servers as local processes.")]
BuildArtifactsOpt = Annotated[Path, typer.Option(help="Artifacts directory (missing models are built).")]
StateOpt = Annotated[Path, typer.Option(help="Where to record what was started.")]
RecordedStateOpt = Annotated[Path, typer.Option(help="The servers `serveoff up` recorded.")]
StackOpt = Annotated[
    Path | None,
    typer.Option(help="Bench the servers of this docker compose stack (what `serveoff prepare` wrote)."),
]
BaselinesOpt = Annotated[bool, typer.Option(help="Also measure the in-process baselines.")]
StackMemoryOpt = Annotated[
    str, typer.Option("--memory", help="The servers' containers' memory limit (checked).")
]
StackLoadgenOpt = Annotated[
    str | None,
    typer.Option("--loadgen-cpus", help="The load generator's CPU set (compose's bench service), checked."),
]

# The server setting: one fair ServerConfig.
PresetOpt = Annotated[str, typer.Option(help=f"{either(PRESETS)}.")]
CpusOpt = Annotated[str | None, typer.Option(help="CPU set of the servers, e.g. 0-3 (default: all).")]
InstancesOpt = Annotated[
    int | None,
    typer.Option(help="Model instances per server (each server's own knob: workers, batch threads)."),
]
ThreadsOpt = Annotated[int | None, typer.Option(help="Intra-op threads per instance.")]
MaxBatchOpt = Annotated[int | None, typer.Option(help="Server-side batch size (1: no batching).")]
BatchTimeoutOpt = Annotated[int | None, typer.Option(help="How long a partial batch waits, ms.")]

# How servers run in containers.
MemoryOpt = Annotated[str, typer.Option(help="Memory limit of each server's container (--docker), e.g. 4g.")]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option("--image", help="SERVER=IMAGE: run this image, not the server's (--docker; repeatable)."),
]
MountOpt = Annotated[
    list[Path] | None,
    typer.Option("--mount", help="A host path the images need, mounted read-only at its place (--docker)."),
]

# The load plan.
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
SettleSliceOpt = Annotated[float, typer.Option(help="Settling warm-up: length of each slice, s.")]
SettleFloorOpt = Annotated[
    float, typer.Option(help="Settling warm-up before each target's first point: at least this long, s.")
]
SettleCapOpt = Annotated[float, typer.Option(help="Settling warm-up: at most this long, s (0: none).")]
CalibrateOpt = Annotated[
    bool, typer.Option(help="First measure the load generator's own floor on a trivial local endpoint.")
]
WorkersOpt = Annotated[int, typer.Option(help="Locust worker processes (0: generate load in this process).")]
UiOpt = Annotated[bool, typer.Option("--ui", help="Serve locust's web UI on 127.0.0.1 while it runs.")]
UiPortOpt = Annotated[int, typer.Option(help="Port of locust's web UI.")]
UiHostOpt = Annotated[
    str, typer.Option(help="Address of the web UI: 0.0.0.0 only in a container publishing it on 127.0.0.1.")
]
SeedOpt = Annotated[int, typer.Option(help="Seed of the arrival times and the bootstrap.")]
LoadgenCpusOpt = Annotated[
    str | None,
    typer.Option(help="The load generator's CPU set, e.g. 2-3 (default: the CPUs not given to the servers)."),
]

# Where a run goes.
OutOpt = Annotated[Path, typer.Option(help="Results directory; the run goes into <out>/<run-id>/.")]
RunIdOpt = Annotated[str | None, typer.Option(help="Name of the run (default: the UTC time).")]


@dataclass(frozen=True)
class ServerOptions:
    """The one fair setting every server gets (``--preset``, ``--cpus``, ...)."""

    preset: PresetOpt = "matched"
    cpus: CpusOpt = None
    instances: InstancesOpt = None
    threads: ThreadsOpt = None
    max_batch_size: MaxBatchOpt = None
    batch_timeout_ms: BatchTimeoutOpt = None

    def config(self, available: tuple[int, ...] | None = None) -> ServerConfig:
        """The ``ServerConfig``, its CPUs checked against ``available`` (default: this process's CPUs);
        one clear line for each bad value."""
        chosen = parse_cpus(self.cpus, available) if self.cpus is not None else None  # "" is malformed
        return server_config(
            self.preset, cpus=chosen, instances=self.instances, threads=self.threads,
            max_batch_size=self.max_batch_size, batch_timeout_ms=self.batch_timeout_ms, available=available,
        )  # fmt: skip


@dataclass(frozen=True)
class ContainerFlags:
    """Whether the servers run from their images (``--docker``), and how: ``--memory``, ``--image``,
    ``--mount``."""

    docker: DockerOpt = False
    memory: MemoryOpt = DEFAULT_MEMORY
    image: ImageOpt = None
    mount: MountOpt = None

    def options(self) -> ContainerOptions | None:
        """With ``--docker``, the ``ContainerOptions``, one clear line for each bad value (no engine is
        asked); without, ``None``, and one clear line if a container's option was given."""
        from serveoff.serving.container import container_options

        if self.docker:
            return container_options(self.memory, self.image or [], self.mount or [])
        given = changed(self)
        if given:
            verb = "sets" if len(given) == 1 else "set"
            raise ServeoffError(f"{', '.join(given)} {verb} up server containers, so only with --docker")
        return None


@dataclass(frozen=True)
class StartOptions:
    """Which servers `serveoff run` starts, with what setting, and where (natively or in containers)."""

    server: ServerOpt = None
    setting: ServerOptions = ServerOptions()
    containers: ContainerFlags = ContainerFlags()


@dataclass(frozen=True)
class OutputOptions:
    """Where a run's results go: ``<out>/<run-id>/``."""

    out: OutOpt = DEFAULT_RESULTS
    run_id: RunIdOpt = None


@dataclass(frozen=True)
class OwnModelOptions:
    """A model of your own for `serveoff build`: all four options, or none."""

    torchscript: Annotated[
        Path | None, typer.Option(help="Your TorchScript file (bring your own model).")
    ] = None
    savedmodel: Annotated[
        Path | None, typer.Option(help="Your SavedModel directory (bring your own model).")
    ] = None
    sample_inputs: Annotated[
        Path | None,
        typer.Option(help="A .npy batch of wire-format inputs for the parity check (your own model)."),
    ] = None
    name: Annotated[str | None, typer.Option(help="The name to serve your own model under.")] = None


@dataclass(frozen=True)
class LoadPlanOptions:
    """How the load is generated and measured: everything a ``BenchPlan`` holds but models and targets."""

    load: LoadOpt = "closed"
    concurrency: ConcurrencyOpt = None
    rate: RateOpt = None
    arrival: ArrivalOpt = "poisson"
    p99_bound_ms: BoundOpt = 100.0
    start_rate: StartRateOpt = 10.0
    max_probes: ProbesOpt = 10
    batch_size: BatchOpt = 1
    timeout: TimeoutOpt = 10.0
    warmup: WarmupOpt = 2.0
    window: WindowOpt = 3.0
    min_windows: MinWindowsOpt = 3
    max_windows: MaxWindowsOpt = 8
    tolerance: ToleranceOpt = 0.1
    settle_slice: SettleSliceOpt = 1.0
    settle_floor: SettleFloorOpt = 5.0
    settle_cap: SettleCapOpt = 60.0
    calibrate: CalibrateOpt = True
    workers: WorkersOpt = 0
    ui: UiOpt = False
    ui_port: UiPortOpt = 8089
    ui_host: UiHostOpt = "127.0.0.1"
    seed: SeedOpt = 0
    loadgen_cpus: LoadgenCpusOpt = None

    def plan(self, models: list[str], targets: list[Target]) -> BenchPlan:
        """The ``BenchPlan``, with one clear line for each bad value.

        Every value is checked (bounds and finiteness, even of options this load does not use) before the
        load generator is imported: nothing is started or measured with a bad one.
        """
        from serveoff.loadtest.plan import SearchPolicy, WindowPolicy, check, load_points

        numbers = {"--batch-size": self.batch_size, "--timeout": self.timeout, "--workers": self.workers,
                   "--ui-port": self.ui_port, "--seed": self.seed}  # fmt: skip
        for name, value in numbers.items():
            check(name, value)
        loadgen_cpus = self.loadgen()
        points = load_points(self.load, self.concurrency, self.rate, self.arrival)
        search = SearchPolicy(self.p99_bound_ms, self.start_rate, self.max_probes, arrival=self.arrival)
        search.validate()
        policy = WindowPolicy(self.warmup, self.window, self.min_windows, self.max_windows,
                              tolerance=self.tolerance, settle_slice_s=self.settle_slice,
                              settle_floor_s=self.settle_floor, settle_cap_s=self.settle_cap)  # fmt: skip
        policy.validate()
        from serveoff.loadtest.bench import BenchPlan  # imports locust, which monkey-patches the process

        return BenchPlan(
            models=models, targets=targets, points=points,
            policy=policy, search=search if self.load == "search" else None,
            batch_size=self.batch_size, timeout_s=self.timeout, workers=self.workers,
            ui_port=self.ui_port if self.ui else None, ui_host=self.ui_host, seed=self.seed,
            loadgen_cpus=loadgen_cpus, calibrate=self.calibrate,
        )  # fmt: skip

    def loadgen(self) -> tuple[int, ...] | None:
        """The CPUs of ``--loadgen-cpus``, checked against this machine's (``None``: not given)."""
        if self.loadgen_cpus is None:
            return None
        try:
            return parse_cpus(self.loadgen_cpus)
        except ServeoffError as err:
            raise ServeoffError(f"the load generator's {err} (--loadgen-cpus)") from None


def flag(name: str) -> str:
    """The long option of parameter ``name``: ``max_batch_size`` is ``--max-batch-size``."""
    return "--" + name.replace("_", "-")


def changed(group: Any) -> list[str]:
    """The options of ``group`` (an option group's instance, groups within it too) set to something other
    than their default."""
    given = []
    for each in fields(group):
        value = getattr(group, each.name)
        if is_dataclass(value):
            given += changed(value)
        elif value != each.default:
            given.append(flag(each.name))
    return given


class Hidden:
    """Marks a group parameter, ``Annotated[ServerOptions, Hidden()]``, whose options stay out of --help:
    a command keeps them only to answer with one clear line where they moved."""


def hidden(alias: Any) -> Any:
    """The option ``alias`` (``Annotated[type, typer.Option(...)]``), left out of --help."""
    kind, info = get_args(alias)
    info = copy(info)
    info.hidden = True
    return Annotated[kind, info]


def grouped(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with each parameter annotated with an option group expanded into the group's options, in
    place; the command is called with the group built from them. Every parameter is keyword-only."""
    hints = get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    builders: dict[str, Callable[[dict[str, Any]], Any]] = {}
    for param in inspect.signature(command).parameters.values():
        group, hide = _group(hints[param.name])
        if group is None:
            params.append(_keyword(param.name, hints[param.name], param.default))
        else:
            options, builders[param.name] = _expand(group, hide)
            params += options

    @functools.wraps(command)
    def expanded(**values: Any) -> None:
        for name, build in builders.items():
            values[name] = build(values)
        command(**values)

    expanded.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    expanded.__annotations__ = {param.name: param.annotation for param in params}
    return expanded


def _expand(group: type, hide: bool) -> tuple[list[inspect.Parameter], Callable[[dict[str, Any]], Any]]:
    """The options of ``group`` (of the groups within it too), and how to build the group from their values
    (taking them out of the values)."""
    members = get_type_hints(group, include_extras=True)
    params: list[inspect.Parameter] = []
    parts: dict[str, Callable[[dict[str, Any]], Any]] = {}
    for each in fields(group):
        inner, _ = _group(members[each.name])
        if inner is not None:
            options, parts[each.name] = _expand(inner, hide)
            params += options
        else:
            alias = hidden(members[each.name]) if hide else members[each.name]
            params.append(_keyword(each.name, alias, each.default))
            parts[each.name] = functools.partial(_take, each.name)
    return params, lambda values: group(**{name: part(values) for name, part in parts.items()})


def _take(name: str, values: dict[str, Any]) -> Any:
    """The value of option ``name``, taken out of ``values``."""
    return values.pop(name)


def _group(hint: Any) -> tuple[type | None, bool]:
    """The option group a parameter's type names (``None`` for a plain option), and whether it is hidden."""
    hide = False
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        hide = any(isinstance(extra, Hidden) for extra in extras)
    return (hint, hide) if isinstance(hint, type) and is_dataclass(hint) else (None, False)


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A keyword-only parameter (so that options with and without defaults mix in any order)."""
    default = inspect.Parameter.empty if default is MISSING else default
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
