"""Clients for one model on TorchServe: REST with TF Serving's JSON payload, gRPC with raw tensor bytes.

Every call has a timeout. A timeout, a refused connection or a server-side failure is turned into a
``ServerError`` by the server's ``diagnose`` callback, which adds the log tail when TorchServe died.
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
import requests
from google.protobuf import empty_pb2

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.models.spec import InputSpec
from serveoff.serving.base import Client, Diagnose, WireRequest
from serveoff.serving.payload import JSON_HEADERS, json_body

PROTO = Path(__file__).with_name("inference.proto")
PREDICTIONS_METHOD = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
REJECTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
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


class RestClient(Client):
    """POSTs ``{"instances": batch}`` to ``/predictions/<model>``, the same JSON TF Serving's REST gets."""

    def __init__(
        self, base_url: str, model: str, spec: InputSpec, timeout: float, diagnose: Diagnose
    ) -> None:
        self.url = f"{base_url}/predictions/{model}"
        self.model = model
        self.spec = spec
        self.timeout = timeout
        self.diagnose = diagnose
        self.session = requests.Session()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.spec, self.model)
        try:
            response = self.session.post(
                self.url, data=json_body(batch), headers=JSON_HEADERS, timeout=self.timeout
            )
        except requests.Timeout:
            raise self.diagnose(
                f"TorchServe gave no REST answer for {self.model} within the {self.timeout:g} s timeout"
            ) from None
        except requests.RequestException as err:
            raise self.diagnose(
                f"TorchServe REST request for {self.model} failed: {err}", lost=True
            ) from None
        if response.status_code >= 500:
            raise self.diagnose(
                f"TorchServe answered HTTP {response.status_code} for {self.model}: {response.text[:300]}"
            )
        if response.status_code != 200:
            raise ServeoffError(
                f"TorchServe rejected the REST request for {self.model} (HTTP {response.status_code}): "
                f"{response.text[:300]}"
            )
        try:
            return np.asarray(response.json()["predictions"], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as err:
            raise ServeoffError(
                f"TorchServe's REST answer for {self.model} has no predictions: {err}"
            ) from None

    def close(self) -> None:
        self.session.close()


class GrpcClient(Client):
    """Calls ``Predictions`` with the batch as raw little-endian tensor bytes; the reply is raw float32."""

    def __init__(self, target: str, model: str, spec: InputSpec, timeout: float, diagnose: Diagnose) -> None:
        messages, services = inference_api()
        self.request_type = messages.PredictionsRequest
        self.channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        self.stub = services.InferenceAPIsServiceStub(self.channel)
        self.model = model
        self.spec = spec
        self.wire_dtype = np.dtype(spec.dtype).newbyteorder("<")
        self.timeout = timeout
        self.diagnose = diagnose

    def predict(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.spec, self.model)
        raw = np.ascontiguousarray(batch, dtype=self.wire_dtype).tobytes()
        request = self.request_type(model_name=self.model, input={self.spec.name: raw})
        try:
            reply = self.stub.Predictions(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise self.error(err) from None
        return np.frombuffer(reply.prediction, dtype="<f4").astype(np.float32).reshape(len(batch), -1)

    def error(self, err: grpc.RpcError) -> ServeoffError:
        """The error for a failed call: the client's fault, a timeout, or a server problem."""
        code = err.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return self.diagnose(
                f"TorchServe gave no gRPC answer for {self.model} within the {self.timeout:g} s timeout"
            )
        if code in REJECTED:
            return ServeoffError(f"TorchServe rejected the gRPC request for {self.model}: {err.details()}")
        return self.diagnose(
            f"TorchServe gRPC request for {self.model} failed ({code.name}): {err.details()}",
            lost=code == grpc.StatusCode.UNAVAILABLE,
        )

    def close(self) -> None:
        self.channel.close()
