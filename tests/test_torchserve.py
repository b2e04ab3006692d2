"""A real TorchServe from the venv: REST and gRPC answers, metrics, configuration, failures and clean-up.

One server (digits-mlp, float input, and text-encoder-tiny, int input) is shared by the module; the
failure tests start small servers of their own and stop them whatever happens.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.models.runners import TorchScriptRunner
from serveoff.serving.process import ServerError
from serveoff.serving.resources import server_config
from serveoff.serving.torchserve import config as ts_config
from serveoff.serving.torchserve import handler
from serveoff.serving.torchserve.package import mar_of, model_store
from serveoff.serving.torchserve.server import TorchServe
from tests.torchserve_helpers import START_TIMEOUT_S, broken_model, java_of, left_running, new_server
from tests.wire import predict

MODELS = ("digits-mlp", "text-encoder-tiny")


def layouts(built: dict[str, BuildResult], *names: str) -> list[ArtifactLayout]:
    return [ArtifactLayout(built[name].root, name) for name in names]


@pytest.fixture(scope="module")
def served(built: dict[str, BuildResult], tmp_path_factory: pytest.TempPathFactory):
    """The module's server; on teardown it must leave no process behind."""
    server = new_server(layouts(built, *MODELS), tmp_path_factory.mktemp("torchserve"))
    try:
        server.start(timeout=START_TIMEOUT_S)
        recorded = server.processes()
        yield server
    finally:
        server.stop()
    assert left_running(recorded, server.config_path) == []


@pytest.fixture
def small_server(built: dict[str, BuildResult], tmp_path: Path):
    """A started server of digits-mlp that a test may break; stopped (and checked) afterwards."""
    server = new_server(layouts(built, "digits-mlp"), tmp_path)
    try:
        server.start(timeout=START_TIMEOUT_S)
        recorded = server.processes()
        yield server
    finally:
        server.stop()
    assert left_running(recorded, server.config_path) == []


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("model", MODELS)
def test_predictions_match_torchscript(served: TorchServe, model: str, protocol: str) -> None:
    (layout,) = [m for m in served.models if m.name == model]
    samples = np.load(layout.samples)
    expected = TorchScriptRunner(layout.torchscript).predict(samples)
    halves = (samples[:1], samples[1:])
    got = np.concatenate([predict(served, model, protocol, half, timeout_s=30) for half in halves])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_batch_of_the_wrong_shape_is_refused_clearly(served: TorchServe, protocol: str) -> None:
    with pytest.raises(
        ServeoffError,
        match=r"does not fit text-encoder-tiny: its input 'input_ids' takes \[n, \*\[16\]\]",
    ):
        predict(served, "text-encoder-tiny", protocol, np.zeros((2, 15), dtype=np.int32))


def test_metrics_count_requests(served: TorchServe) -> None:
    def requests_of(model: str) -> float:
        metrics = served.metrics()
        counted = [
            v for k, v in metrics.items() if k.startswith("ts_inference_requests_total") and model in k
        ]
        return sum(counted)

    before = requests_of("digits-mlp")
    samples = np.load(served.models[0].samples)
    for _ in range(3):
        predict(served, "digits-mlp", "rest", samples[:2], timeout_s=30)
    assert requests_of("digits-mlp") >= before + 3


def test_config_listens_on_localhost_only_without_tokens(served: TorchServe) -> None:
    props = dict(line.split("=", 1) for line in served.config_path.read_text().splitlines())
    addresses = {k: v for k, v in props.items() if k.endswith("_address")}
    assert set(addresses) == {
        "inference_address",
        "management_address",
        "metrics_address",
        "grpc_inference_address",
        "grpc_management_address",
    }
    assert all(v in ("127.0.0.1", f"http://127.0.0.1:{v.rsplit(':', 1)[-1]}") for v in addresses.values())
    assert props["disable_token_authorization"] == "true"
    assert props["enable_model_api"] == "false"
    assert props["metrics_mode"] == "prometheus"
    assert served.answering()


def test_processes_are_pinned_and_workers_run_the_venv_python(served: TorchServe) -> None:
    config = served.config
    procs = served.processes()
    pids = served.pids()
    assert os.getsid(pids[0]) == pids[0] and sorted(pids) == sorted(p.pid for p in procs)  # session first
    assert [p.name() for p in procs].count("java") == 1
    workers = [p for p in procs if any("model_service_worker" in part for part in p.cmdline())]
    assert len(workers) == len(MODELS) * config.instances
    for worker in workers:
        assert Path(worker.cmdline()[0]).parent == Path(sys.executable).parent
        env = worker.environ()
        assert env[ts_config.THREADS_ENV] == env["OMP_NUM_THREADS"] == str(config.threads)
        assert env[ts_config.INTEROP_THREADS_ENV] == str(config.inter_op_threads)
    assert all(tuple(p.cpu_affinity()) == config.cpus for p in procs)
    applied = f"serveoff torch threads: intra-op {config.threads}, inter-op {config.inter_op_threads}"
    assert served.log_path.read_text().count(applied) == len(workers)


def test_versions(served: TorchServe) -> None:
    versions = served.versions()
    assert versions["torchserve"] == "0.12.0"
    assert versions["torch"].startswith("2.")
    assert int(versions["java"].split(".")[0]) >= 17


def test_thread_variable_names_match_the_handler() -> None:
    assert (ts_config.THREADS_ENV, ts_config.INTEROP_THREADS_ENV) == (
        handler.THREADS_ENV,
        handler.INTEROP_THREADS_ENV,
    )


def test_presets_map_onto_torchserve_knobs(built, tmp_path: Path) -> None:
    (layout,) = layouts(built, "digits-mlp")
    mars = {layout.name: mar_of(layout)}
    ports = ts_config.Ports.from_base(20000)
    matched = server_config("matched", cpus=(0,), max_batch_size=8, batch_timeout_ms=0)
    props = ts_config.properties(matched, ports, model_store(layout), mars)
    assert props["default_workers_per_model"] == "1" and props["job_queue_size"] == "100"
    assert props["number_of_netty_threads"] == props["netty_client_threads"] == "1"
    (settings,) = json.loads(props["models"])["digits-mlp"].values()
    assert settings["minWorkers"] == settings["maxWorkers"] == 1
    assert (settings["batchSize"], settings["maxBatchDelay"]) == (8, 1)  # TorchServe reads 0 ms as 100 ms
    assert ts_config.worker_env(matched) == {
        "OMP_NUM_THREADS": "1",
        ts_config.THREADS_ENV: "1",
        ts_config.INTEROP_THREADS_ENV: "1",
    }
    default = server_config("out-of-the-box")
    props = ts_config.properties(default, ports, model_store(layout), mars)
    (settings,) = json.loads(props["models"])["digits-mlp"].values()
    assert not {"default_workers_per_model", "job_queue_size", "number_of_netty_threads"} & set(props)
    assert not {"minWorkers", "maxWorkers"} & set(settings) and settings["batchSize"] == 1
    assert ts_config.worker_env(default) == {}


def test_java_missing_is_one_clear_line(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    server = new_server(layouts(built, "digits-mlp"), tmp_path)
    try:
        with pytest.raises(ServeoffError, match=r"TorchServe needs Java 17.*apt-get install") as err:
            server.start(timeout=START_TIMEOUT_S)
    finally:
        server.stop()
    assert "\n" not in str(err.value)
    assert server.pids() == [] and not server.log_path.exists()


def test_port_in_use_is_one_clear_line(built, tmp_path: Path) -> None:
    server = new_server(layouts(built, "digits-mlp"), tmp_path)
    taken = server.ports.grpc
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        try:
            with pytest.raises(
                ServeoffError, match=rf"port {taken} .*TorchServe gRPC inference.* in use"
            ) as err:
                server.start(timeout=START_TIMEOUT_S)
        finally:
            server.stop()
    assert "\n" not in str(err.value)
    assert server.pids() == []


def test_bad_config_value_is_refused(built, tmp_path: Path) -> None:
    with pytest.raises(ServeoffError, match="instances must be at least 1"):
        server_config(instances=0)
    server = new_server(layouts(built, "digits-mlp"), tmp_path, replace(server_config(), instances=0))
    try:
        with pytest.raises(ServeoffError, match="instances must be at least 1"):
            server.start(timeout=START_TIMEOUT_S)
    finally:
        server.stop()
    assert server.pids() == []


def test_missing_mar_is_one_clear_line(built, tmp_path: Path) -> None:
    server = new_server([ArtifactLayout(tmp_path / "nothing", "nothing")], tmp_path / "work")
    try:
        with pytest.raises(ServeoffError, match=r"nothing\.mar is missing; build") as err:
            server.start(timeout=START_TIMEOUT_S)
    finally:
        server.stop()
    assert "\n" not in str(err.value)
    assert server.pids() == []


def test_model_that_fails_to_load_fails_fast_with_the_log(tmp_path: Path) -> None:
    server = new_server([broken_model(tmp_path)], tmp_path / "work")
    began = time.monotonic()
    try:
        with pytest.raises(ServerError, match="model broken failed to load") as err:
            server.start(timeout=START_TIMEOUT_S)
    finally:
        server.stop()
    assert time.monotonic() - began < 60
    message = str(err.value)
    assert "PytorchStreamReader failed" in message.splitlines()[0]  # torch's own reason
    assert f"log {server.log_path}:" in message and len(message.splitlines()) > 5  # and the log tail
    assert server.processes() == []
    assert left_running([], server.config_path) == []


def test_killed_server_fails_the_next_calls_with_its_log(small_server: TorchServe) -> None:
    samples = np.load(small_server.models[0].samples)
    for protocol in ("rest", "grpc"):
        predict(small_server, "digits-mlp", protocol, samples[:1])
    java_of(small_server).kill()
    for protocol in ("rest", "grpc"):
        began = time.monotonic()
        with pytest.raises(ServerError, match=r"TorchServe died .*; log .*torchserve\.log:\n") as err:
            predict(small_server, "digits-mlp", protocol, samples[:1])
        assert time.monotonic() - began < 5
        assert len(str(err.value).splitlines()) > 5  # the log tail


def test_hung_server_fails_calls_at_their_timeout(small_server: TorchServe) -> None:
    samples = np.load(small_server.models[0].samples)
    java = java_of(small_server)
    try:
        for protocol in ("rest", "grpc"):
            predict(small_server, "digits-mlp", protocol, samples[:1], timeout_s=2)
        java.suspend()
        for protocol in ("rest", "grpc"):
            began = time.monotonic()
            with pytest.raises(ServerError, match=rf"{protocol} .* no answer within the 2 s timeout") as err:
                predict(small_server, "digits-mlp", protocol, samples[:1], timeout_s=2)
            assert 1.5 < time.monotonic() - began < 6
            assert "still running" in str(err.value)
    finally:
        java.resume()
