"""TF Serving's REST and gRPC predict wire protocol; TensorFlow is never imported here.

Requests are prepared here and sent by ``loadtest/send.py`` (one request) or the load generator.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.serving.base import WireRequest
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
