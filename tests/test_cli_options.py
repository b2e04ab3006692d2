"""The command line's options are declared once: a group is the same options, with the same names, defaults
and help, in every command that takes it; `bench` measures running servers and `run` starts them; help
texts list what the registries hold."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from serveoff.cli import app
from serveoff.models.build import BuildResult
from serveoff.models.zoo import DEFAULT_MODELS
from serveoff.options import (
    ContainerFlags,
    LoadPlanOptions,
    ModelOpt,
    OutputOptions,
    ServerOptions,
    StartOptions,
    grouped,
)
from serveoff.serving.resources import PRESETS, available_cpus
from serveoff.serving.targets import ALL_TARGETS, SERVERS

from .cli_runner import run_cli
from .commands import QUICK, serveoff

COMMANDS = typer.main.get_command(app).commands
GROUPS = {
    LoadPlanOptions: ("bench", "run"),
    OutputOptions: ("bench", "run"),
    ServerOptions: ("up", "prepare", "run", "bench"),
    ContainerFlags: ("up", "run", "bench"),
    StartOptions: ("run", "bench"),
}


def _options(command: str) -> dict:
    return {param.name: param for param in COMMANDS[command].params}


@pytest.mark.parametrize("group", list(GROUPS), ids=lambda group: group.__name__)
def test_a_group_is_the_same_options_in_every_command_that_takes_it(group) -> None:
    defaults = _options_of(group)
    names = list(defaults)
    declared = []
    for command in GROUPS[group]:
        order = [param.name for param in COMMANDS[command].params]
        start = order.index(names[0])
        assert order[start : start + len(names)] == names, command  # together, in the group's order
        options = _options(command)
        declared.append([(options[n].opts, options[n].default, options[n].help) for n in names])
    assert all(each == declared[0] for each in declared)
    assert [default for _, default, _ in declared[0]] == list(defaults.values())


def _options_of(group) -> dict:
    """The options a command taking ``group`` gets, by name, with their defaults."""

    def probe(**_) -> None:
        """A command taking the group."""

    probe.__signature__ = inspect.Signature(
        [inspect.Parameter("options", inspect.Parameter.KEYWORD_ONLY, annotation=group)]
    )
    probe.__annotations__ = {"options": group}
    return {name: param.default for name, param in inspect.signature(grouped(probe)).parameters.items()}


def test_bench_keeps_what_moved_to_run_out_of_its_help() -> None:
    """`bench` measures running servers: the options that set servers up are `run`'s, and `bench` keeps them
    hidden only to say so in one line."""
    bench, run = _options("bench"), _options("run")
    moved = {"docker", "server", *(f.name for f in [*fields(ServerOptions), *fields(ContainerFlags)])}
    assert {name for name, param in bench.items() if param.hidden} == moved
    assert all(not run[name].hidden for name in moved)
    assert {"loadgen_cpus", "target"} <= set(bench) & set(run)


def test_help_texts_list_what_the_registries_hold() -> None:
    run = _options("run")
    assert all(name in run["server"].help for name in SERVERS)
    assert all(target.name in run["target"].help for target in ALL_TARGETS)
    assert all(preset in run["preset"].help for preset in PRESETS)
    assert all(name in _options("build")["model"].help for name in DEFAULT_MODELS)


def test_grouped_calls_the_command_with_each_group_built_from_its_options() -> None:
    seen = {}
    demo = typer.Typer()

    @demo.command()
    @grouped
    def probe(*, model: ModelOpt = None, setting: ServerOptions, output: OutputOptions) -> None:
        seen.update(model=model, setting=setting, output=output)

    done = CliRunner().invoke(demo, ["--cpus", "0", "--max-batch-size", "4", "--run-id", "x", "-m", "a"])
    assert done.exit_code == 0, done.output
    assert seen == {
        "model": ["a"],
        "setting": ServerOptions(cpus="0", max_batch_size=4),
        "output": OutputOptions(run_id="x"),
    }


def test_container_options_without_docker_are_one_line(capsys, monkeypatch) -> None:
    result = run_cli(["up", "--native", "--memory", "2g", "--mount", "/tmp"], capsys, monkeypatch)
    assert result.code == 2
    assert result.stderr == (
        "serveoff: error: --memory, --mount set up server containers, so only with --docker\n"
    )


def test_run_refuses_a_target_whose_server_it_does_not_start(env, tmp_path) -> None:
    args = ["run", "--server", "torchserve", "--target", "tfserving:rest", "--out", str(tmp_path)]
    done = serveoff(args, env, timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "serveoff: error: target tfserving:rest needs tfserving, which this run does not start: add --server "
        "tfserving"
    ]
    assert list(tmp_path.iterdir()) == []


def test_bench_pins_the_load_generator_to_the_cpus_asked_for(
    built: dict[str, BuildResult], env, tmp_path: Path
) -> None:
    cpu = available_cpus()[-1]
    artifacts = built["digits-mlp"].root.parent
    args = ["bench", "--target", "torch:inprocess", "--artifacts", str(artifacts), "--concurrency", "1",
            *QUICK, "--loadgen-cpus", str(cpu), "--out", str(tmp_path), "--run-id", "pinned"]  # fmt: skip
    done = serveoff(args, env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "pinned" / "results.json").read_text())
    assert doc["manifest"]["generator"]["cpus"] == [cpu]
