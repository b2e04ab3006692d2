"""The Docker side of the command line: `serveoff prepare` (compose's build service) and one clear line
for each bad value or missing piece, before anything is built or started. No Docker engine is needed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from serveoff.errors import ServeoffError
from serveoff.models.build import BuildResult
from serveoff.serving.container import check_architectures
from serveoff.serving.resources import available_cpus
from serveoff.serving.stack import STACK_SCHEMA
from serveoff.serving.targets import SERVERS

from .cli_runner import CliResult, run_cli
from .commands import serveoff

NO_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.mark.parametrize(
    "args",
    [
        ["up", "--docker"],
        ["run", "--docker"],
        ["bench", "--stack", "."],
    ],
)
def test_no_docker_engine_is_one_line(args, env, tmp_path) -> None:
    if args[1] == "--stack":
        (tmp_path / "stack.json").write_text(json.dumps({"schema": STACK_SCHEMA, "servers": {}}))
        args = ["bench", "--stack", str(tmp_path)]
    result = _serveoff(args, env | {"DOCKER_HOST": NO_ENGINE}, tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("serveoff: error: cannot reach a Docker engine (")
    assert lines[0].endswith("; start Docker, or run the servers natively without --docker")
    assert [p.name for p in tmp_path.iterdir()] == (["stack.json"] if "--stack" in args else [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--docker", "--memory", "lots"], "memory limit 'lots' is malformed; write it like 4g"),
        (["run", "--docker", "--memory", "1000g"], "memory limit '1000g' is more than this machine has"),
        (["run", "--docker", "--memory", "10m"], "memory limit '10m' is below 64m"),
        (["run", "--docker", "--image", "nginx"], "--image 'nginx' must be SERVER=IMAGE, SERVER one of "
                                                 f"{', '.join(SERVERS)}"),
        (["up", "--docker", "--mount", "/nonexistent"], "--mount /nonexistent does not exist"),
        (["up", "--docker", "--cpus", "0-99"], "CPU list '0-99' names CPUs this machine lacks"),
        (["run", "--docker", "--cpus", "two"], "CPU list 'two' is malformed"),
        (["run", "--docker", "--loadgen-cpus", "0-99"], "the load generator's CPU list '0-99' names CPUs "
                                                        "this machine lacks"),
        (["run", "--memory", "2g", "--image", "torchserve=x"], "--memory, --image set up server containers, "
                                                              "so only with --docker"),
        (["up", "--docker", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["bench", "--docker"], "bench measures running servers; to start the servers' images, measure them "
                                "and remove them, use `serveoff run --docker`"),
        (["bench", "--stack", "/nonexistent"], "/nonexistent/stack.json is missing; write it with "
                                               "`serveoff prepare --stack /nonexistent`"),
        (["bench", "--cpus", "0", "--memory", "2g"], "--cpus, --memory set up the servers `serveoff run` "
                                                     "starts (natively, or with --docker); running servers "
                                                     "keep the setting they were started with"),
        (["bench", "--server", "torchserve"], "--server sets up the servers `serveoff run` starts"),
        (["prepare", "--cpus", "0-99"], "CPU list '0-99' names CPUs this machine lacks"),
        (["prepare", "--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["prepare", "--memory", "4x"], "memory limit '4x' is malformed"),
        (["prepare", "--loadgen-cpus", "0-99"], "the load generator's CPU list '0-99' names CPUs this "
                                                "machine lacks"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line(args, message, env, tmp_path) -> None:
    """Each value is checked before a Docker engine is asked (none answers here, whether or not one runs)."""
    result = _serveoff(args, env | {"DOCKER_HOST": NO_ENGINE}, tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was built or written


def test_prepare_writes_each_servers_launch_script_from_one_setting(
    built: dict[str, BuildResult], capsys, monkeypatch, tmp_path
) -> None:
    artifacts = built["digits-mlp"].root.parent
    stack = tmp_path / "stack"
    args = ["prepare", "--artifacts", str(artifacts), "--stack", str(stack), "--cpus", "0", "--memory", "2g"]
    args += ["--server", "torchserve", "--server", "tfserving"]  # KServe does not batch: it refuses
    result = run_cli([*args, "--max-batch-size", "8", "--batch-timeout-ms", "2"], capsys, monkeypatch)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == f"stack: {stack}/stack.json (models digits-mlp; CPUs 0, memory 2g)"
    doc = json.loads((stack / "stack.json").read_text())
    assert doc["config"]["cpus"] == [0] and doc["config"]["max_batch_size"] == 8
    assert set(doc["servers"]) == {"torchserve", "tfserving"}

    torchserve = _launch(stack / "torchserve" / "launch.sh")
    assert torchserve["argv"][:4] == ["torchserve", "--start", "--foreground", "--ncs"]
    assert torchserve["env"]["OMP_NUM_THREADS"] == "1"
    props = dict(
        line.split("=", 1) for line in (stack / "torchserve" / "config.properties").read_text().splitlines()
    )
    assert props["inference_address"] == "http://0.0.0.0:8080"  # published on the host's 127.0.0.1 only
    assert props["management_address"] == "http://127.0.0.1:8081"  # never reachable from outside
    assert props["grpc_management_address"] == "127.0.0.1"
    assert json.loads(props["models"])["digits-mlp"]["1.0"]["batchSize"] == 8

    tfserving = _launch(stack / "tfserving" / "launch.sh")
    assert tfserving["argv"][0] == "tensorflow_model_server"
    assert "--port=8500" in tfserving["argv"] and "--rest_api_port=8501" in tfserving["argv"]
    assert "--enable_batching=true" in tfserving["argv"]
    batching = (stack / "tfserving" / "batching.config").read_text()
    assert "max_batch_size" in batching and "value: 8" in batching and "value: 2000" in batching


def test_prepare_warns_when_the_load_generator_shares_the_servers_cpus(
    built: dict[str, BuildResult], capsys, monkeypatch, tmp_path
) -> None:
    artifacts = built["digits-mlp"].root.parent
    args = ["prepare", "--artifacts", str(artifacts), "--stack", str(tmp_path), "--cpus", "0"]
    result = run_cli([*args, "--loadgen-cpus", "0-1"], capsys, monkeypatch)
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "serveoff: warning: the load generator shares CPUs [0] with the servers and takes CPU from the "
        "server it measures; give SERVEOFF_LOADGEN_CPUS other CPUs than SERVEOFF_SERVER_CPUS"
    ]
    others = [cpu for cpu in available_cpus() if cpu != 0]
    if others:  # a one-CPU machine has no CPU to keep the load generator apart on
        apart = run_cli([*args, "--loadgen-cpus", str(others[0])], capsys, monkeypatch)
        assert apart.code == 0 and "warning" not in apart.stderr, apart.stderr


# What the docker SDK read on real engines: `docker version`'s Arch and each image's Architecture.
APPLE_SILICON = {"engine": "arm64", "torchserve": "arm64", "tfserving": "amd64"}  # Docker Desktop, M-series
X86_64 = {"engine": "amd64", "torchserve": "amd64", "tfserving": "amd64"}


def test_an_image_the_engine_would_emulate_is_refused_in_one_line() -> None:
    recorded = dict(APPLE_SILICON)
    engine = recorded.pop("engine")
    with pytest.raises(ServeoffError) as refused:
        check_architectures(recorded, engine)
    assert str(refused.value) == (
        "tfserving's image is amd64 but the Docker engine runs arm64: it would run emulated and the "
        "comparison would be false; measure on an amd64 machine, or natively (serveoff run)"
    )
    check_architectures({"torchserve": recorded["torchserve"]}, engine)  # one native server is fine
    native = dict(X86_64)
    check_architectures(native, native.pop("engine"))


def _serveoff(args: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    """``serveoff ARGS`` in a subprocess started in ``cwd`` (bench and run monkey-patch their process)."""
    done = serveoff(args, env, cwd=cwd, timeout=120)
    return CliResult(done.returncode, done.stdout, done.stderr)


def _launch(script: Path) -> dict:
    """The environment and command a launch script sets, read back with a shell's quoting rules."""
    env, argv = {}, []
    for line in script.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            key, value = words[1].split("=", 1)
            env[key] = value
        elif words[:1] == ["exec"]:
            argv = words[1:]
    return {"env": env, "argv": argv}
