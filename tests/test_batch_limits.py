"""Requests larger than the servers' batches, and a full batch queue.

Real TF Serving cannot be installed here, so its batching is played by ``tests/fakes/tensorflow_model_server``
with upstream's codes and words (tensorflow's ``shared_batch_scheduler.h``; REST statuses as TF Serving's
``http_server.cc`` maps them). serveoff must refuse a ``--batch-size`` over ``--max-batch-size`` before it
starts a server or sends a request, and count a full queue as overload, not as a lost connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from serveoff.loadtest.failures import grpc_error
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.serving import fleet
from serveoff.serving.base import WireRequest
from serveoff.serving.metrics import scrape
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import server_config
from serveoff.serving.tfserving.server import TFServing
from tests.commands import QUICK, leftovers, serveoff

BATCH_TIMEOUT_S = 4.0  # a partial batch waits this long: long enough to find the queue full behind it
OVERSIZE = "Task size 3 is larger than maximum input batch size 2"
QUEUE_FULL = (
    "The batch scheduling queue to which this task was submitted is full; currently 1 batches enqueued "
    "and max_enqueued_batches is 1"
)


@pytest.fixture(scope="module")
def digits(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built["digits-mlp"].root, "digits-mlp")


@pytest.fixture(scope="module")
def tight(digits, env, tmp_path_factory) -> Iterator[Path]:
    """The TF Serving fake batching at most 2 inputs on one batch thread, with one batch enqueued at most;
    its state file, as `serveoff up` writes it."""
    config = server_config("matched", max_batch_size=2, batch_timeout_ms=int(BATCH_TIMEOUT_S * 1000))
    config = replace(config, instances=1, queue_size=1)
    workdir = tmp_path_factory.mktemp("tight")
    state = workdir / "servers.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env["PATH"])
        fleet.start_servers(["tfserving"], [digits], config, workdir / "work", state,
                            {"tfserving": free_port_base(TFServing.port_count)})  # fmt: skip
    yield state
    fleet.stop_servers(state)


def wire(state: Path, digits: ArtifactLayout, protocol: str, rows: int) -> WireRequest:
    (record,) = fleet.read_state(state)
    batch = np.load(digits.samples)[:rows]
    return TFServing.wire_request(record.endpoints, digits, protocol, batch)


def send_rest(request: WireRequest) -> requests.Response:
    url = request.address + request.path
    return requests.post(url, data=request.body, headers=request.headers, timeout=30)


def send_grpc(request: WireRequest) -> grpc.RpcError | None:
    """The call's error, or ``None`` when it was answered."""
    with grpc.insecure_channel(request.address) as channel:
        try:
            channel.unary_unary(request.path)(request.body, timeout=30)
        except grpc.RpcError as err:
            return err
    return None


def requests_counted(state: Path) -> float:
    (record,) = fleet.read_state(state)
    metrics = scrape(record.endpoints.metrics)
    return sum(v for k, v in metrics.items() if k.startswith(":tensorflow:serving:request_count{"))


def test_a_request_larger_than_the_batch_is_refused_as_tf_serving_does(tight, digits) -> None:
    reply = send_rest(wire(tight, digits, "rest", 3))
    assert reply.status_code == 400
    assert reply.json() == {"error": OVERSIZE}
    error = send_grpc(wire(tight, digits, "grpc", 3))
    assert error is not None
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, OVERSIZE)
    assert send_rest(wire(tight, digits, "rest", 2)).status_code == 200  # a full batch runs at once


def test_a_full_queue_answers_unavailable_and_the_waiting_request_is_served(tight, digits) -> None:
    waiting: list[requests.Response] = []
    first = threading.Thread(target=lambda: waiting.append(send_rest(wire(tight, digits, "rest", 1))))
    started = time.monotonic()
    first.start()  # one input: it waits in the open batch for the batch timeout
    refused_grpc = refused_rest = None
    while first.is_alive() and refused_grpc is None:
        time.sleep(0.2)  # until the first request is in the queue; two more inputs do not fit beside it
        error = send_grpc(wire(tight, digits, "grpc", 2))
        if error is not None:
            refused_grpc, refused_rest = error, send_rest(wire(tight, digits, "rest", 2))
    first.join(timeout=30)
    assert refused_grpc is not None, "the queue never filled while the first request waited"
    assert (refused_grpc.code(), refused_grpc.details()) == (grpc.StatusCode.UNAVAILABLE, QUEUE_FULL)
    assert refused_rest is not None and refused_rest.status_code == 503
    assert refused_rest.json() == {"error": QUEUE_FULL}
    (reply,) = waiting
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1
    assert time.monotonic() - started >= BATCH_TIMEOUT_S * 0.9  # it ran when its batch timed out


def test_a_full_queue_is_overload_and_a_lost_connection_is_not() -> None:
    assert grpc_error(grpc.StatusCode.UNAVAILABLE, QUEUE_FULL) == "overloaded (gRPC UNAVAILABLE: queue full)"
    torchserve = (
        'Model "m" has no worker to serve inference request. Please use scale workers API to add workers.'
    )
    assert grpc_error(grpc.StatusCode.INTERNAL, torchserve) == "overloaded (gRPC INTERNAL: queue full)"
    nowhere = f"127.0.0.1:{free_port_base(1)}"  # nothing listens there
    with grpc.insecure_channel(nowhere) as channel, pytest.raises(grpc.RpcError) as lost:
        channel.unary_unary("/tensorflow.serving.PredictionService/Predict")(b"", timeout=5)
    assert grpc_error(lost.value.code(), lost.value.details()) == "gRPC UNAVAILABLE"
    assert grpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") == "timeout"


def test_bench_counts_a_full_queue_as_overload(tight, tmp_path, env) -> None:
    args = ["bench", "--state", str(tight), "--out", str(tmp_path), "--run-id", "full"]
    args += ["--target", "tfserving:grpc", "--target", "tfserving:rest", "--concurrency", "4"]
    done = serveoff([*args, "--batch-size", "2", *QUICK], env)
    assert done.returncode == 0, done.stderr[-3000:]
    points = json.loads((tmp_path / "full" / "results.json").read_text())["points"]
    errors = {p["target"]: p["summary"]["errors"] for p in points}
    assert set(errors["tfserving:grpc"]) == {"overloaded (gRPC UNAVAILABLE: queue full)"}, errors
    assert set(errors["tfserving:rest"]) == {"HTTP 503"}, errors
    assert all(p["summary"]["requests"] > 0 for p in points)  # the queue's batches were served meanwhile


def test_bench_refuses_a_batch_the_running_servers_cannot_take(tight, tmp_path, env) -> None:
    before = requests_counted(tight)
    args = ["bench", "--state", str(tight), "--out", str(tmp_path), "--target", "tfserving:rest"]
    done = serveoff([*args, "--batch-size", "3", *QUICK], env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert lines == [
        "serveoff: error: --batch-size 3 is larger than the servers' --max-batch-size 2: TF Serving rejects "
        f'such requests ("{OVERSIZE}"); send --batch-size 2 or less, or give the servers --max-batch-size 3'
    ]
    assert requests_counted(tight) == before  # not one request was sent
    assert list(tmp_path.iterdir()) == []  # and no run was recorded


def test_run_refuses_the_mismatch_before_starting_a_server(artifacts_dir, tmp_path, env, marker) -> None:
    args = ["run", "--server", "torchserve", "--artifacts", str(artifacts_dir), "--out", str(tmp_path)]
    done = serveoff([*args, "--max-batch-size", "2", "--batch-size", "3", *QUICK], env, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]  # TorchServe would have taken it: refused up front
    assert len(lines) == 1 and "--batch-size 3 is larger than the servers' --max-batch-size 2" in lines[0]
    assert list(tmp_path.iterdir()) == [] and leftovers(marker) == []  # no run, nothing started
