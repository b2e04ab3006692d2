"""TorchServe's wire protocol for one model: REST with TF Serving's JSON payload, gRPC with raw tensor bytes.

Requests are prepared here and sent by ``loadtest/send.py`` (one request) or the load generator.
"""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import grpc
import numpy as np
from google.protobuf import empty_pb2

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.models.spec import InputSpec
from serveoff.serving.base import WireRequest
from serveoff.serving.payload import JSON_HEADERS, json_body

PROTO = Path(__file__).with_name("inference.proto")
PREDICTIONS_METHOD = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
_proto_lock = threading.Lock()


def input_spec(layout: ArtifactLayout) -> InputSpec:
    """The model's wire input, from its artifact manifest."""
    return InputSpec.from_json(require_manifest(layout)["input"])


def check_batch(batch: np.ndarray, spec: InputSpec, model: str) -> None:
    """A clear error for a batch that is not ``[n, *instance shape]`` of the model's input."""
    if batch.ndim == 0 or batch.shape[1:] != spec.shape:
        raise ServeoffError(
            f"a batch of shape {list(batch.shape)} does not fit {model}: its input {spec.name!r} "
            f"takes [n, *{list(spec.shape)}]"
        )


@functools.cache
def inference_api() -> tuple[ModuleType, ModuleType]:
    """serveoff's TorchServe inference proto, compiled at run time: (messages, services).

    protoc runs in a subprocess: grpc_tools' in-process compiler crashes a process that has loaded
    TensorFlow (each bundles its own protobuf C++ library).
    """
    with _proto_lock, tempfile.TemporaryDirectory(prefix="serveoff-proto-") as out:
        argv = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}"]
        argv += [f"--python_out={out}", f"--grpc_python_out={out}", PROTO.name]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise ServeoffError(
                f"cannot compile {PROTO}: {done.stderr.strip()}; reinstall grpcio-tools (./setup.sh)"
            )
        sys.path.insert(0, out)  # the generated service module imports its messages by file name
        try:
            messages = importlib.import_module(f"{PROTO.stem}_pb2")
            return messages, importlib.import_module(f"{PROTO.stem}_pb2_grpc")
        finally:
            sys.path.remove(out)


def wire_request(base_url: str, grpc_target: str, model: str, spec: InputSpec, protocol: str,
                 batch: np.ndarray) -> WireRequest:  # fmt: skip
    """TorchServe's request for ``batch``: the shared JSON body over REST, raw tensor bytes over gRPC."""
    check_batch(batch, spec, model)
    if protocol == "rest":
        return WireRequest("rest", base_url, f"/predictions/{model}", json_body(batch), JSON_HEADERS)
    messages, _ = inference_api()
    raw = np.ascontiguousarray(batch, dtype=np.dtype(spec.dtype).newbyteorder("<")).tobytes()
    body = messages.PredictionsRequest(model_name=model, input={spec.name: raw}).SerializeToString()
    return WireRequest("grpc", grpc_target, PREDICTIONS_METHOD, body, {})


def decode_reply(protocol: str, body: bytes, output_shape: tuple[int, ...]) -> np.ndarray:
    """The outputs in TorchServe's reply: ``{"predictions": ...}`` over REST, raw float32 over gRPC."""
    try:
        if protocol == "rest":
            return np.asarray(json.loads(body)["predictions"], dtype=np.float32)
        messages, _ = inference_api()
        raw = messages.PredictionResponse.FromString(body).prediction
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(-1, *output_shape)
    except (ValueError, KeyError, TypeError) as err:
        raise ServeoffError(f"TorchServe's {protocol} reply holds no predictions: {err}") from None


def grpc_ping(target: str, timeout: float) -> str:
    """TorchServe's gRPC health status ("Healthy" when ready), or "" when it does not answer."""
    _, services = inference_api()
    with grpc.insecure_channel(target) as channel:
        try:
            reply = services.InferenceAPIsServiceStub(channel).Ping(empty_pb2.Empty(), timeout=timeout)
            return json.loads(reply.health).get("status", "")  # the REST /ping body, as a string
        except (grpc.RpcError, ValueError, AttributeError):
            return ""
