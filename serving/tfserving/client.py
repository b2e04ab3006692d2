"""Clients for TF Serving's REST and gRPC predict APIs; TensorFlow is never imported here.

Every failure (timeout, refused connection, an error status) is handed to ``diagnose``, the server's
callback that turns it into a ``ServerError`` saying whether the server died (with its log tail) or hangs;
its second argument says the connection was lost, when a dying server may take a moment to be seen dead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import grpc
import numpy as np
import requests

from serveoff.errors import ServeoffError
from serveoff.serving.base import Client, Diagnose, WireRequest
from serveoff.serving.payload import JSON_HEADERS, json_body
from serveoff.serving.tfserving.protos import (
    DT_FLOAT,
    DT_INT32,
    PREDICT_METHOD,
    PredictRequest,
    PredictResponse,
    TensorProto,
)

SIGNATURE = "serving_default"
_WIRE_TYPES = {np.dtype("float32"): (DT_FLOAT, "<f4"), np.dtype("int32"): (DT_INT32, "<i4")}


@dataclass(frozen=True)
class WireSpec:
    """The names a model's signature uses for its one input and one output."""

    input_name: str
    output_name: str


def wire_request(
    base_url: str, grpc_target: str, model: str, spec: WireSpec, protocol: str, batch: np.ndarray
) -> WireRequest:
    """TF Serving's request for ``batch``: the shared JSON rows over REST, a ``PredictRequest`` over gRPC."""
    if protocol == "rest":
        return WireRequest("rest", base_url, f"/v1/models/{model}:predict", json_body(batch), JSON_HEADERS)
    request = PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = SIGNATURE
    fill_tensor(request.inputs[spec.input_name], np.asarray(batch))
    return WireRequest("grpc", grpc_target, PREDICT_METHOD, request.SerializeToString(), {})


def decode_reply(protocol: str, body: bytes, spec: WireSpec) -> np.ndarray:
    """The outputs in TF Serving's reply: JSON ``predictions`` over REST, a ``PredictResponse`` over gRPC."""
    try:
        if protocol == "rest":
            return np.asarray(json.loads(body)["predictions"], dtype=np.float32)
        outputs = PredictResponse.FromString(body).outputs
        return to_numpy(outputs[spec.output_name])
    except (ValueError, KeyError, TypeError) as err:
        raise ServeoffError(
            f"TF Serving's {protocol} reply holds no {spec.output_name!r} outputs: {err}"
        ) from None


class RestClient(Client):
    """POSTs to ``/v1/models/<model>:predict``: row format (``instances``) or columnar (``inputs``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        spec: WireSpec,
        timeout: float,
        diagnose: Diagnose,
        *,
        columnar: bool = False,
    ) -> None:
        self.url = f"{base_url}/v1/models/{model}:predict"
        self.model = model
        self.spec = spec
        self.timeout = timeout
        self.diagnose = diagnose
        self.columnar = columnar
        self.session = requests.Session()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        values = np.asarray(batch).tolist()
        body = {"inputs": {self.spec.input_name: values}} if self.columnar else {"instances": values}
        what = f"REST predict on {self.model} ({self.url})"
        try:
            response = self.session.post(
                self.url,
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise self.diagnose(
                f"{what} got no answer within the {self.timeout:g} s timeout", False
            ) from None
        except requests.ConnectionError as err:
            raise self.diagnose(f"{what} failed: {err}", True) from None
        except requests.RequestException as err:
            raise self.diagnose(f"{what} failed: {err}", False) from None
        try:
            reply = response.json()
        except ValueError:
            reply = {}
        if response.status_code != 200:
            error = reply.get("error") if isinstance(reply, dict) else None
            raise self.diagnose(
                f"{what} returned HTTP {response.status_code}: {error or response.text[:200]}", False
            )
        key = "outputs" if self.columnar else "predictions"
        if not isinstance(reply, dict) or key not in reply:
            raise self.diagnose(f"{what} answered without {key!r}: {response.text[:200]}", False)
        outputs = reply[key]
        if isinstance(outputs, dict):  # several named outputs (rows of a row reply are dicts then)
            outputs = outputs[self.spec.output_name]
        elif outputs and isinstance(outputs[0], dict):
            outputs = [row[self.spec.output_name] for row in outputs]
        try:
            return np.asarray(outputs, dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise self.diagnose(
                f"{what} answered outputs that are not a float tensor: {err}", False
            ) from None

    def close(self) -> None:
        self.session.close()


class GrpcClient(Client):
    """Calls ``PredictionService.Predict`` with the batch as one ``TensorProto`` built from its bytes."""

    def __init__(self, target: str, model: str, spec: WireSpec, timeout: float, diagnose: Diagnose) -> None:
        self.target = target
        self.model = model
        self.spec = spec
        self.timeout = timeout
        self.diagnose = diagnose
        # TF Serving itself accepts messages of any size; the client must not be the limit either.
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.insecure_channel(target, options=options)
        self._predict = self.channel.unary_unary(
            PREDICT_METHOD,
            request_serializer=PredictRequest.SerializeToString,
            response_deserializer=PredictResponse.FromString,
        )

    def predict(self, batch: np.ndarray) -> np.ndarray:
        request = PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = SIGNATURE
        fill_tensor(request.inputs[self.spec.input_name], np.asarray(batch))
        what = f"gRPC Predict on {self.model} ({self.target})"
        try:
            response = self._predict(request, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self.diagnose(
                    f"{what} got no answer within the {self.timeout:g} s timeout", False
                ) from None
            lost = err.code() == grpc.StatusCode.UNAVAILABLE
            raise self.diagnose(f"{what} failed: {err.code().name}: {err.details()}", lost) from None
        outputs = response.outputs
        name = self.spec.output_name if self.spec.output_name in outputs else next(iter(outputs), None)
        if name is None:
            raise self.diagnose(f"{what} answered with no outputs", False)
        try:
            return to_numpy(outputs[name])
        except ServeoffError as err:
            raise self.diagnose(f"{what}: {err}", False) from None

    def close(self) -> None:
        self.channel.close()


def fill_tensor(tensor: TensorProto, array: np.ndarray) -> None:
    """Set ``tensor`` to ``array``: dtype, shape and little-endian bytes in ``tensor_content``."""
    if array.dtype not in _WIRE_TYPES:
        raise ServeoffError(f"cannot send {array.dtype} inputs over gRPC; send float32 or int32")
    dtype, wire = _WIRE_TYPES[array.dtype]
    tensor.dtype = dtype
    for size in array.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = array.astype(wire, copy=False).tobytes()


def to_numpy(tensor: TensorProto) -> np.ndarray:
    """A float32 ``TensorProto`` as numpy, from ``tensor_content`` or ``float_val`` (TF Serving's default).

    Like TensorFlow, a ``float_val`` shorter than the tensor repeats its last value (an all-equal tensor is
    sent as one value).
    """
    if tensor.dtype != DT_FLOAT:
        raise ServeoffError(
            f"TF Serving answered a tensor of data type {tensor.dtype}; serveoff expects float32"
        )
    shape = tuple(dim.size for dim in tensor.tensor_shape.dim)
    count = math.prod(shape)
    if tensor.tensor_content:
        values = np.frombuffer(tensor.tensor_content, dtype="<f4")
    else:
        values = np.asarray(tensor.float_val, dtype=np.float32)
        if 0 < values.size < count:
            values = np.pad(values, (0, count - values.size), mode="edge")
        elif values.size == 0:
            values = np.zeros(count, dtype=np.float32)
    if values.size != count:
        raise ServeoffError(f"TF Serving answered {values.size} values for a tensor of shape {list(shape)}")
    return values.astype(np.float32).reshape(shape)
