"""`serveoff up --native` / `serveoff down`: start servers by hand and stop exactly what was started."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.serving import fleet
from serveoff.serving.process import ensure_port_free, free_port_base
from serveoff.serving.resources import server_config

from .cli_runner import run_cli
from .torchserve_helpers import environment_matches


@pytest.fixture
def digits(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built["digits-mlp"].root, "digits-mlp")


def session_alive(rec: fleet.Record) -> list[psutil.Process]:
    return fleet.processes_of(rec)


def test_up_records_the_servers_and_down_stops_exactly_them(digits, tmp_path, capsys, monkeypatch) -> None:
    state = tmp_path / "servers.json"
    records = fleet.start_servers(
        ["torchserve"],
        [digits],
        server_config("matched"),
        tmp_path / "work",
        state,
        port_bases={"torchserve": free_port_base(5)},
    )
    try:
        (rec,) = records
        assert len(session_alive(rec)) >= 3  # wrapper, java, one worker
        saved = json.loads(state.read_text())
        assert saved["schema"] == fleet.STATE_SCHEMA
        assert saved["servers"][0]["session"] == rec.session
        sample = np.load(digits.samples)[:2]
        reply = requests.post(
            f"{rec.endpoints.rest}/predictions/digits-mlp", json={"instances": sample.tolist()}, timeout=30
        )
        assert reply.status_code == 200 and len(reply.json()["predictions"]) == 2

        with pytest.raises(ServeoffError, match="serveoff down"):
            fleet.start_servers(["torchserve"], [digits], server_config("matched"), tmp_path / "w2", state)
    finally:
        result = run_cli(["down", "--state", str(state)], capsys, monkeypatch)
    assert result.code == 0, result.stderr
    assert "stopped torchserve" in result.stdout
    assert session_alive(rec) == []
    assert not state.exists()
    again = run_cli(["down", "--state", str(state)], capsys, monkeypatch)
    assert again.code == 0 and "no server of serveoff was running" in again.stdout


def test_a_failing_server_stops_those_already_started(digits, tmp_path, monkeypatch) -> None:
    if shutil.which("tensorflow_model_server"):
        pytest.skip("needs a machine without tensorflow_model_server")
    state = tmp_path / "servers.json"
    with pytest.raises(ServeoffError, match="tensorflow_model_server"):
        fleet.start_servers(
            ["torchserve", "tfserving"],
            [digits],
            server_config("matched"),
            tmp_path / "work",
            state,
            port_bases={"torchserve": free_port_base(5), "tfserving": free_port_base(2)},
        )
    assert not state.exists()
    config = tmp_path / "work" / "torchserve" / "config.properties"
    assert config.exists(), "TorchServe was not started before TF Serving failed"
    assert environment_matches(config) == [], "TorchServe was left running"


@pytest.mark.parametrize("args", [[], ["--native", "--docker"]])
def test_up_needs_one_place_to_run_the_servers(args, capsys, monkeypatch) -> None:
    result = run_cli(["up", *args], capsys, monkeypatch)
    assert result.code == 2
    assert result.stderr.strip() == (
        "serveoff: error: say where the servers run: --native (local processes) or --docker (images)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "triton"], "unknown server 'triton'"),
        (["--cpus", "0-999"], "names CPUs this machine lacks"),
        (["--instances", "0"], "instances must be at least 1"),
        (["--preset", "fastest"], "unknown preset 'fastest'"),
        (["--model", "nope"], "unknown model 'nope'"),
    ],
)
def test_up_rejects_bad_values_in_one_line(args, message, tmp_path: Path, capsys, monkeypatch) -> None:
    result = run_cli(["up", "--native", "--state", str(tmp_path / "s.json"), *args], capsys, monkeypatch)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "s.json").exists()


ENDPOINTS = {"rest": "http://127.0.0.1:1", "grpc": "127.0.0.1:2", "metrics": "http://127.0.0.1:1/metrics"}


def test_a_version_3_servers_file_still_reads_with_typed_fields(tmp_path: Path) -> None:
    config = server_config("matched", cpus=(0,))
    container = {"server": "torchserve", "session": 0, "started_at": 0.0, "endpoints": ENDPOINTS,
                 "models": {"digits-mlp": "/a"}, "config": config.to_json(), "versions": {},
                 "log": "/w", "launcher": "docker", "container": "abc", "memory_bytes": 2**30}  # fmt: skip
    state = tmp_path / "servers.json"
    state.write_text(json.dumps({"schema": "serveoff.servers/3", "servers": [container]}))
    (rec,) = fleet.read_state(state)
    assert rec.config == config and rec.endpoints.grpc == "127.0.0.1:2"
    assert (rec.session, rec.started_at, rec.container) == (None, None, "abc"), "no stand-in PID 0 is kept"
    assert fleet.processes_of(rec) == []
    fleet.write_state(state, [rec])
    saved = json.loads(state.read_text())
    assert saved["schema"] == "serveoff.servers/4" and saved["servers"][0]["session"] is None
    assert fleet.read_state(state) == [rec]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ("[]", "is not a serveoff servers file (schema None)"),
        ('{"schema": "serveoff.servers/3"}', "is malformed (KeyError"),
        ('{"schema": "serveoff.servers/3", "servers": [{"server": "ts"}]}', "is malformed (TypeError"),
        ('{"schema": "serveoff.servers/3", "servers": "ts"}', "is malformed (TypeError"),
        (json.dumps({"schema": fleet.STATE_SCHEMA, "servers": [{
            "server": "torchserve", "session": "12", "started_at": 0.0, "models": {}, "versions": {},
            "log": "x", "endpoints": ENDPOINTS, "config": server_config("matched").to_json()}]}),
         "is malformed (ValueError: bad session"),
    ],
)  # fmt: skip
def test_a_malformed_servers_file_is_one_line(content, message, tmp_path, capsys, monkeypatch) -> None:
    state = tmp_path / "servers.json"
    state.write_text(content)
    up = ["up", "--native", "--server", "torchserve", "--artifacts", str(tmp_path / "artifacts")]
    for command in (["down"], up):
        result = run_cli([*command, "--state", str(state)], capsys, monkeypatch)
        lines = result.stderr.strip().splitlines()
        assert result.code == 2 and len(lines) == 1, result.stderr
        assert message in lines[0] and "delete it if no server of serveoff runs" in lines[0]
    assert state.read_text() == content
    assert not (tmp_path / "artifacts").exists(), "nothing is built before the servers file is checked"


def test_a_port_in_use_says_what_to_do_that_exists() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ServeoffError) as caught:
            ensure_port_free(port, "TorchServe REST inference")
    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 (TorchServe REST inference) is in use; stop the process that holds it "
        "(`serveoff down` stops the servers `serveoff up` started)"
    )
