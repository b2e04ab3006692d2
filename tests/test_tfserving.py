"""TF Serving's launcher, configuration files and clients, end to end.

The real ``tensorflow_model_server`` cannot be installed on the test machine, so these tests put a TEST FAKE
of it first on PATH (``tests/fakes/tensorflow_model_server``): it speaks TF Serving's REST and gRPC protocols
with real TensorFlow execution and reads the files serveoff writes with the same protos. The product never
starts it and nothing outside ``tests/`` names it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.models.runners import SavedModelRunner
from serveoff.serving.process import ServerError, free_port_base
from serveoff.serving.resources import ServerConfig, server_config
from serveoff.serving.tfserving.client import fill_tensor, to_numpy
from serveoff.serving.tfserving.config import METRICS_PATH, Ports, flags, write_config_files
from serveoff.serving.tfserving.package import model_base_path
from serveoff.serving.tfserving.protos import (
    PREDICT_METHOD,
    BatchingParameters,
    MonitoringConfig,
    PredictRequest,
    TensorProto,
)
from serveoff.serving.tfserving.server import TFServing
from tests.wire import predict

REPO = Path(__file__).parents[1]
FAKES = Path(__file__).parent / "fakes"
MODELS = ("digits-mlp", "text-encoder-tiny")  # float and int inputs
STARTUP_S = 300.0  # two shared cores, and other work may run


@pytest.fixture(scope="module")
def fake_on_path() -> Iterator[None]:
    """The fake binary, and this venv's python3 for its shebang, first on PATH for this module."""
    with pytest.MonkeyPatch.context() as patch:
        path = [str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        patch.setenv("PATH", os.pathsep.join(path))
        yield


@pytest.fixture(scope="module")
def layouts(built: dict[str, BuildResult]) -> dict[str, ArtifactLayout]:
    return {name: ArtifactLayout(built[name].root, name) for name in MODELS}


@pytest.fixture(scope="module")
def expected(layouts: dict[str, ArtifactLayout]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model: the sample inputs and the in-process SavedModel's outputs for them."""
    result = {}
    for name, layout in layouts.items():
        samples = np.load(layout.samples)
        result[name] = samples, SavedModelRunner(layout.savedmodel).predict(samples)
    return result


@pytest.fixture(scope="module")
def served(fake_on_path, layouts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TFServing]:
    """One server for the module: both models, the matched preset, server-side batching on (batches of up to
    8 inputs: the samples, which a smaller batch would reject as TF Serving does)."""
    config = server_config("matched", max_batch_size=8)
    workdir = tmp_path_factory.mktemp("tfserving")
    server = TFServing(list(layouts.values()), config, workdir, free_port_base(TFServing.port_count))
    server.start(timeout=STARTUP_S)
    try:
        yield server
    finally:
        server.stop()


def leftovers(workdir: Path) -> list[psutil.Process]:
    """Live processes whose command line names ``workdir``: every server process started on it does."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(workdir) in " ".join(
            proc.info["cmdline"] or []
        ):
            found.append(proc)
    return found


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_predictions_match_the_savedmodel_in_process(
    served: TFServing, expected, model: str, protocol: str
) -> None:
    samples, want = expected[model]
    got = predict(served, model, protocol, samples)
    one = predict(served, model, protocol, samples[:1])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, want[:1], atol=1e-5, rtol=0)


def test_requests_are_counted_in_prometheus_metrics(served: TFServing, expected) -> None:
    def count() -> float:
        return sum(
            value
            for key, value in served.metrics().items()
            if key.startswith(":tensorflow:serving:request_count") and 'model_name="digits-mlp"' in key
        )

    before = count()
    samples, _ = expected["digits-mlp"]
    for protocol in ("rest", "grpc"):
        predict(served, "digits-mlp", protocol, samples)
    assert count() == before + 2


def test_metrics_are_upstreams_text_and_scrape_under_its_names(served: TFServing, expected) -> None:
    samples, _ = expected["digits-mlp"]
    predict(served, "digits-mlp", "rest", samples)
    text = requests.get(served.endpoints.metrics, timeout=10).text
    # TF Serving's prometheus_exporter: "# TYPE" lines, no "# HELP", counters named without "_total"
    assert "# TYPE :tensorflow:serving:request_count counter\n" in text
    assert "_total" not in text and "# HELP" not in text
    key = ':tensorflow:serving:request_count{model_name="digits-mlp",status="OK"}'
    assert served.metrics()[key] >= 1


def test_written_files_parse_back_with_tf_servings_protos(served: TFServing, layouts) -> None:
    models = text_format.Parse((served.workdir / "models.config").read_text(), ModelServerConfig())
    entries = {entry.name: entry for entry in models.model_config_list.config}
    assert set(entries) == set(MODELS)
    for name, entry in entries.items():
        assert Path(entry.base_path) == model_base_path(layouts[name]).resolve()
        assert entry.model_platform == "tensorflow"

    batching = text_format.Parse((served.workdir / "batching.config").read_text(), BatchingParameters())
    config = served.config
    assert batching.max_batch_size.value == config.max_batch_size == 8
    assert batching.HasField("batch_timeout_micros")
    assert batching.batch_timeout_micros.value == config.batch_timeout_ms * 1000
    assert batching.num_batch_threads.value == config.instances
    assert batching.max_enqueued_batches.value == config.queue_size

    monitoring = text_format.Parse((served.workdir / "monitoring.config").read_text(), MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == METRICS_PATH
    assert served.endpoints.metrics == f"http://127.0.0.1:{served.port_base + 1}{METRICS_PATH}"


def test_flags_map_the_server_config(tmp_path: Path, layouts) -> None:
    ports = Ports.from_base(9000)
    tuned = ServerConfig("matched", (0,), instances=2, threads=3, inter_op_threads=1, max_batch_size=8,
                         batch_timeout_ms=5, queue_size=50)  # fmt: skip
    files = write_config_files(list(layouts.values()), tuned, tmp_path / "tuned")
    args = flags(tuned, files, ports)
    assert args == [
        "--port=9000",
        "--rest_api_port=9001",
        f"--model_config_file={files.models}",
        f"--monitoring_config_file={files.monitoring}",
        "--enable_batching=true",
        f"--batching_parameters_file={files.batching}",
        "--tensorflow_intra_op_parallelism=6",  # instances x threads: one shared intra-op pool
        "--tensorflow_inter_op_parallelism=1",
        "--file_system_poll_wait_seconds=0",
    ]
    batching = text_format.Parse(files.batching.read_text(), BatchingParameters())
    assert (batching.num_batch_threads.value, batching.batch_timeout_micros.value) == (2, 5000)

    defaults = server_config("out-of-the-box")
    files = write_config_files(list(layouts.values()), defaults, tmp_path / "defaults")
    assert files.batching is None
    assert [arg.split("=")[0] for arg in flags(defaults, files, ports)] == [
        "--port",
        "--rest_api_port",
        "--model_config_file",
        "--monitoring_config_file",
        "--file_system_poll_wait_seconds",
    ]


def test_versions_are_the_binarys_own_words(served: TFServing) -> None:
    versions = served.versions()
    assert versions["TensorFlow ModelServer"] == "0.0.0-serveoff-test-fake"
    assert "TensorFlow Library" in versions


def test_a_bad_request_raises_with_the_servers_message(served: TFServing) -> None:
    wrong = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ServerError, match="HTTP 400") as info:
        predict(served, "digits-mlp", "rest", wrong)
    assert "still running" in str(info.value)
    with pytest.raises(ServerError, match="INVALID_ARGUMENT"):
        predict(served, "digits-mlp", "grpc", wrong)
    tokens_as_floats = np.zeros((1, 16), dtype=np.float32)
    with pytest.raises(ServerError, match="to be int32"):
        predict(served, "text-encoder-tiny", "grpc", tokens_as_floats)
    with pytest.raises(ServeoffError, match="does not serve 'nope'"):
        predict(served, "nope", "rest", wrong)


def test_private_messages_are_the_installed_ones() -> None:
    assert PredictRequest.DESCRIPTOR.file.serialized_pb == predict_pb2.DESCRIPTOR.serialized_pb
    method = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].methods_by_name[
        "Predict"
    ]
    assert f"/{method.containing_service.full_name}/{method.name}" == PREDICT_METHOD

    for batch in (
        np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
        np.arange(6, dtype=np.int32).reshape(2, 3),
    ):
        tensor = TensorProto()
        fill_tensor(tensor, batch)
        decoded = tf.make_ndarray(tensor_pb2.TensorProto.FromString(tensor.SerializeToString()))
        np.testing.assert_array_equal(decoded, batch)
        assert decoded.dtype == batch.dtype

    floats = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    for proto in (
        tf.make_tensor_proto(floats),
        tf.make_tensor_proto(2.5, shape=[2, 3]),
    ):  # content, float_val
        got = to_numpy(TensorProto.FromString(proto.SerializeToString()))
        np.testing.assert_array_equal(got, tf.make_ndarray(proto))


def test_the_launcher_and_clients_do_not_import_tensorflow() -> None:
    code = (
        "import sys, serveoff.serving.tfserving.server\n"
        "loaded = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "assert not loaded, loaded[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_missing_binary_is_one_line_with_install_options(
    monkeypatch: pytest.MonkeyPatch, layouts, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    server = TFServing([layouts["digits-mlp"]], server_config("matched"), tmp_path, free_port_base(2))
    with pytest.raises(ServeoffError) as info:
        server.start()
    message = str(info.value)
    assert "\n" not in message
    assert "tensorflow_model_server" in message and "not on PATH" in message
    assert (
        "tensorflow/serving:2.21.0" in message
        and "tensorflow-model-server" in message
        and "source" in message
    )
    assert server.pids() == []


@pytest.mark.parametrize(
    ("change", "error"),
    [({"batch_timeout_ms": -1}, "batch timeout")],  # threads: tests/test_conformance.py
)
def test_a_bad_config_value_is_refused(layouts, tmp_path: Path, change: dict, error: str) -> None:
    config = replace(server_config("matched"), **change)
    server = TFServing([layouts["digits-mlp"]], config, tmp_path, free_port_base(2))
    with pytest.raises(ServeoffError, match=error):
        server.start()
    assert server.pids() == []


def test_a_port_in_use_is_one_clear_line(fake_on_path, layouts, tmp_path: Path) -> None:
    base = free_port_base(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + 1))
        holder.listen()
        server = TFServing([layouts["digits-mlp"]], server_config("matched"), tmp_path, base)
        with pytest.raises(ServeoffError, match=f"port {base + 1} .*in use"):
            server.start()
    assert server.pids() == []


def test_a_model_that_fails_to_load_is_reported_with_the_log(fake_on_path, layouts, tmp_path: Path) -> None:
    broken = ArtifactLayout(tmp_path / "broken", "digits-mlp")
    shutil.copytree(layouts["digits-mlp"].root, broken.root, symlinks=True)
    (broken.savedmodel / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    server = TFServing([broken], server_config("matched"), tmp_path / "work", free_port_base(2))
    started = time.monotonic()
    try:
        with pytest.raises(ServerError) as info:
            server.start(timeout=STARTUP_S)
    finally:
        server.stop()
    assert time.monotonic() - started < STARTUP_S / 2  # failed fast, not at the timeout
    assert "Loading servable: {name: digits-mlp version: 1} failed" in str(info.value)
    assert server.pids() == [] and leftovers(tmp_path / "work") == []


def test_a_hung_server_fails_within_the_client_timeout(served: TFServing, expected) -> None:
    samples, _ = expected["digits-mlp"]
    pids = served.pids()
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for protocol in ("rest", "grpc"):
            started = time.monotonic()
            with pytest.raises(ServerError, match=r"no answer within the 2 s timeout.*still running"):
                predict(served, "digits-mlp", protocol, samples, timeout_s=2.0)
            assert time.monotonic() - started < 2.0 + 3
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert served.answering()


def test_nothing_outside_tests_refers_to_the_fake() -> None:
    hits = [
        str(path.relative_to(REPO))
        for folder in ("serveoff", "models", "serving", "loadtest", "report")
        for path in (REPO / folder).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and "fake" in path.read_text(errors="ignore").lower()
    ]
    assert hits == []
