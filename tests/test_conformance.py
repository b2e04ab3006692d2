"""What every registered server and every in-process runtime must do, run against each of them for real.

Servers (``serving/targets.SERVERS``): launch; an answer over every protocol it declares equal to the
in-process runtime of its framework; its Prometheus metrics count requests; stop leaves no process; a bad
config is one line before anything starts; a server that dies is reported with its log tail. Each server
is started once for its class of tests (and once more for the death test, after the stop test). TF Serving
runs as its TEST DOUBLE (``tests/fakes/tensorflow_model_server``): the real binary cannot exist here.
Requests go out the product's one way (``loadtest/send.py``, through ``tests/wire.py``).

Runtimes (``serving/runtimes``): each, loaded the way the load generator loads it
(``serving/inprocess.inprocess_client``), answers as the TorchScript model does.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.models.runners import TorchScriptRunner
from serveoff.serving import runtimes
from serveoff.serving.base import Server
from serveoff.serving.inprocess import inprocess_client
from serveoff.serving.process import ServerError, free_port_base
from serveoff.serving.resources import ServerConfig, server_config
from serveoff.serving.targets import SERVERS, server_class
from tests.commands import FAKES
from tests.wire import predict

MODEL = "digits-mlp"
START_TIMEOUT_S = 180.0  # two shared cores, and other work may run
ATOL = 1e-4  # the build's own parity bound between runtimes


@pytest.fixture(scope="module")
def layout(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built[MODEL].root, MODEL)


@pytest.fixture(scope="module")
def batch(layout: ArtifactLayout) -> np.ndarray:
    return np.load(layout.samples)[:4]


@pytest.fixture(scope="module", autouse=True)
def fake_on_path() -> Iterator[None]:
    """TF Serving's test double, and this venv's python3 for its shebang, first on PATH."""
    with pytest.MonkeyPatch.context() as patch:
        path = [str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        patch.setenv("PATH", os.pathsep.join(path))
        yield


def new_server(name: str, layout: ArtifactLayout, workdir: Path, **changes: object) -> Server:
    """Server ``name`` on free ports serving ``layout`` under the matched preset on CPU 0, not started."""
    cls = server_class(name)
    config = replace(server_config("matched", cpus=(0,)), **changes)
    return cls([layout], config, workdir, free_port_base(cls.port_count))


def any_threads(config: ServerConfig) -> ServerConfig:
    """``config`` with the thread counts the process already has: they do not change an answer, and
    TensorFlow fixes its own once per process (the session's build may have run TensorFlow here first)."""
    return replace(config, threads=None, inter_op_threads=None)


def alive(procs: list[psutil.Process]) -> list[int]:
    """The PIDs of ``procs`` still running (zombies are not)."""
    found = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="class", params=list(SERVERS))
def served(request, layout: ArtifactLayout, tmp_path_factory) -> Iterator[Server]:
    server = new_server(request.param, layout, tmp_path_factory.mktemp(request.param))
    server.start(timeout=START_TIMEOUT_S)
    try:
        yield server
    finally:
        server.stop()


class TestServer:
    """In order: the tests that need the running server, then stop, then a restart that is killed."""

    def test_it_answers_as_the_inprocess_runtime_over_every_protocol(self, served, layout, batch) -> None:
        runtime = runtimes.get(f"{served.framework}:inprocess")
        want = runtime.load(layout, any_threads(served.config)).predict(batch)
        for protocol in served.protocols:
            got = predict(served, MODEL, protocol, batch, timeout_s=30)
            assert got.dtype == np.float32, protocol
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=protocol)

    def test_its_metrics_count_requests(self, served, batch) -> None:
        before = served.metrics()  # may be empty: a server can publish a counter only once it counted
        assert all(isinstance(value, int | float) for value in before.values())
        for _ in range(3):
            predict(served, MODEL, served.protocols[0], batch, timeout_s=30)
        after = served.metrics()
        assert after and all(isinstance(value, int | float) for value in after.values())
        grown = [key for key, value in after.items() if value - before.get(key, 0.0) >= 3]
        assert grown, "no metric counted the 3 requests"

    def test_stop_leaves_no_process(self, served) -> None:
        procs = served.processes()
        assert procs and served.pids()
        served.stop()
        assert served.processes() == [] and served.pids() == []
        assert alive(procs) == []

    def test_a_server_that_dies_is_reported_with_its_log_tail(self, served, batch) -> None:
        served.start(timeout=START_TIMEOUT_S)
        predict(served, MODEL, served.protocols[0], batch, timeout_s=30)
        procs = served.processes()
        for pid in served.pids():
            os.kill(pid, signal.SIGKILL)
        for protocol in served.protocols:
            with pytest.raises(ServerError) as err:
                predict(served, MODEL, protocol, batch, timeout_s=10)
            message = str(err.value)
            assert "still running" not in message, protocol
            assert len(message.splitlines()) > 2, protocol  # the log tail follows
        served.stop()
        assert served.pids() == [] and alive(procs) == []


@pytest.mark.parametrize("name", list(SERVERS))
def test_a_bad_config_is_one_line_before_anything_starts(name: str, layout, tmp_path: Path) -> None:
    server = new_server(name, layout, tmp_path, threads=0)
    with pytest.raises(ServeoffError, match="threads must be at least 1") as err:
        server.start(timeout=START_TIMEOUT_S)
    assert "\n" not in str(err.value)
    assert server.processes() == [] and server.pids() == []


@pytest.mark.parametrize("name", list(runtimes.names()))
def test_every_runtime_answers_as_the_torchscript_model(name: str, layout, batch) -> None:
    if not runtimes.installed(name):
        pytest.skip(f"{name} needs {', '.join(runtimes.PACKAGES[name])}")
    want = TorchScriptRunner(layout.torchscript).predict(batch)
    client = inprocess_client(name, layout, any_threads(server_config("matched", cpus=(0,))))
    got = client.predict(batch)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, atol=ATOL, rtol=0)
    assert client.applied_cpus() == [0]
