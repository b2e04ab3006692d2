"""The ``serveoff`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from serveoff.errors import ServeoffError

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
    if atol <= 0:
        raise ServeoffError(f"--atol must be positive, got {atol}")

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


@app.command()
def up(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to serve (repeatable; default: digits-mlp)."),
    ] = None,
    server: Annotated[
        list[str] | None,
        typer.Option("--server", "-s", help="torchserve or tfserving (repeatable; default both)."),
    ] = None,
    native: Annotated[bool, typer.Option("--native", help="Run the servers as local processes.")] = False,
    artifacts: Annotated[
        Path, typer.Option(help="Artifacts directory (missing models are built).")
    ] = DEFAULT_ARTIFACTS,
    preset: Annotated[str, typer.Option(help="matched or out-of-the-box.")] = "matched",
    cpus: Annotated[
        str | None, typer.Option(help="CPU set to pin the servers to, e.g. 0-3 (default: all).")
    ] = None,
    instances: Annotated[
        int | None, typer.Option(help="Model instances: TorchServe workers, TF batch threads.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads per instance.")] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Server-side batch size (1: no batching).")
    ] = None,
    batch_timeout_ms: Annotated[int | None, typer.Option(help="How long a partial batch waits.")] = None,
    state: Annotated[Path, typer.Option(help="Where to record what was started.")] = DEFAULT_STATE,
) -> None:
    """Start model servers by hand; `serveoff down` stops exactly what this started."""
    if not native:
        raise ServeoffError("only native servers can be started yet: pass --native")
    from serveoff.serving import fleet
    from serveoff.serving.resources import parse_cpus, server_config
    from serveoff.serving.targets import SERVERS

    config = server_config(
        preset,
        cpus=parse_cpus(cpus) if cpus else None,
        instances=instances,
        threads=threads,
        max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms,
    )
    servers = list(dict.fromkeys(server or SERVERS))
    for name in servers:
        if name not in SERVERS:
            raise ServeoffError(f"unknown server {name!r}; choose from: {', '.join(SERVERS)}")
    layouts = ensure_built(model or ["digits-mlp"], artifacts)
    records = fleet.start_servers(servers, layouts, config, DEFAULT_WORKDIR.resolve(), state)
    for rec in records:
        typer.echo(f"{rec.server}: REST {rec.endpoints['rest']}  gRPC {rec.endpoints['grpc']}  "
                   f"metrics {rec.endpoints['metrics']}  models {', '.join(rec.models)}")  # fmt: skip
    typer.echo(f"stop them with: serveoff down (recorded in {state})")


@app.command()
def down(
    state: Annotated[Path, typer.Option(help="The record `serveoff up` wrote.")] = DEFAULT_STATE,
) -> None:
    """Stop the servers `serveoff up` started (by their recorded PIDs)."""
    from serveoff.serving import fleet

    stopped = fleet.stop_servers(state)
    typer.echo("stopped " + ", ".join(stopped) if stopped else "no server of serveoff was running")


def ensure_built(names: list[str], artifacts: Path) -> list:
    """The artifact layouts of zoo models ``names``, building the missing or outdated ones."""
    from serveoff.models.artifacts import ArtifactLayout
    from serveoff.models.build import build_zoo_model
    from serveoff.models.zoo import check_known

    names = [check_known(n) for n in dict.fromkeys(names)]
    return [ArtifactLayout(build_zoo_model(n, artifacts, log=console.print).root, n) for n in names]


def main() -> None:
    """Entry point: every ServeoffError becomes one line on stderr and a non-zero exit."""
    try:
        app()
    except ServeoffError as err:
        console.print(f"serveoff: error: {err}", markup=False)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        console.print("serveoff: interrupted", markup=False)
        sys.exit(130)
