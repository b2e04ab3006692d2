"""KServe's ModelServer, for real: started natively from .venv-kserve on 127.0.0.1, answering over every
protocol it declares with the in-process runtimes' outputs. Nothing is mocked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.kserve import oip
from serveoff.serving.kserve.server import KServe, KServeOnnx, venv_python
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import server_config
from serveoff.serving.targets import SERVER_PROTOCOLS, parse_target
from tests.wire import predict

MODEL = "digits-mlp"


@pytest.fixture(scope="module")
def layout(built) -> ArtifactLayout:
    return ArtifactLayout(built[MODEL].root, MODEL)


@pytest.fixture(scope="module")
def batch(layout: ArtifactLayout) -> np.ndarray:
    return np.load(layout.samples)[:5].astype(np.float32)


@pytest.fixture(scope="module", params=[KServe, KServeOnnx], ids=["torchscript", "onnx"])
def served(request, layout: ArtifactLayout, tmp_path_factory):
    cls = request.param
    server = cls([layout], server_config(cpus=(0,)), tmp_path_factory.mktemp(cls.name), free_port_base(2))
    server.start(timeout=120)
    yield server
    server.stop()
    assert server.processes() == []  # stop leaves no process


def test_v1_rest_gets_the_body_every_server_gets(served, layout, batch) -> None:
    from serveoff.serving.payload import json_body

    request = served.wire_request(served.endpoints, layout, "v1", batch)
    assert request.body == json_body(batch) and request.path == f"/v1/models/{MODEL}:predict"


def test_predictions_are_counted_in_kserves_prometheus_metrics(served, batch) -> None:
    key = f'request_predict_seconds_count{{model_name="{MODEL}"}}'
    before = served.metrics().get(key, 0.0)
    for _ in range(3):
        predict(served, MODEL, "grpc", batch)
    assert served.metrics()[key] == before + 3


def test_it_listens_on_127_0_0_1_only(served) -> None:
    listening = [c for p in served.processes() for c in p.net_connections() if c.status == psutil.CONN_LISTEN]
    assert {c.laddr.port for c in listening} >= set(served.public_ports())
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}  # gRPC: IPv4-mapped


def test_versions_are_what_runs_in_kserves_venv(served) -> None:
    versions = served.versions()
    assert versions["kserve"] == "0.21.0"
    assert versions[served.runtime.package] in ("2.13.0+cpu", "2.13.0", "1.32.0")
    assert served.pids() and all(psutil.pid_exists(pid) for pid in served.pids())


def test_oip_messages_have_the_protocols_field_numbers() -> None:
    """Ours are declared by hand; KServe's generated module (in its venv, where some are nested messages)
    must agree on the number and type of every field."""
    names = [name for name, _ in oip._MESSAGES]
    script = (
        "import json, sys\nfrom kserve.protocol.grpc import grpc_predict_v2_pb2 as pb\n"
        "def walk(types):\n    for d in types:\n        yield d\n        yield from walk(d.nested_types)\n"
        "out = {d.name: {f.name: [f.number, f.type] for f in d.fields}\n"
        "       for d in walk(pb.DESCRIPTOR.message_types_by_name.values())}\nprint(json.dumps(out))"
    )
    done = subprocess.run([str(venv_python()), "-c", script], capture_output=True, text=True, check=True)
    theirs = json.loads(done.stdout)
    for name in names:
        ours = oip._POOL.FindMessageTypeByName(f"inference.{name}")
        for field in ours.fields:
            assert theirs[name][field.name] == [field.number, field.type], f"{name}.{field.name}"


def test_the_registry_declares_each_servers_protocols() -> None:
    for cls in (KServe, KServeOnnx):
        assert SERVER_PROTOCOLS[cls.name] == cls.protocols
        assert parse_target(f"{cls.name}:v1").protocol == "v1"
    with pytest.raises(ServeoffError, match="unknown target 'torchserve:v1'"):
        parse_target("torchserve:v1")


def test_server_side_batching_is_refused_in_one_line(layout, tmp_path: Path) -> None:
    server = KServe([layout], server_config(cpus=(0,), max_batch_size=4), tmp_path, free_port_base(2))
    with pytest.raises(ServeoffError, match="KServe has no server-side batching") as err:
        server.start()
    assert "\n" not in str(err.value) and server.processes() == []


def test_a_missing_venv_is_one_line_naming_setup_sh(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVEOFF_KSERVE_VENV", str(tmp_path / "nowhere"))
    with pytest.raises(ServeoffError, match=r"run \./setup\.sh") as err:
        KServe.check_installed()
    assert "\n" not in str(err.value)
