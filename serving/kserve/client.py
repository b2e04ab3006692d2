"""KServe's wire protocols: the Open Inference Protocol v2 (``oip``) over REST and gRPC, and V1 REST.

V1 REST is TF Serving's JSON: the request is byte for byte the body the other servers' REST APIs get.
Requests are prepared here and sent by ``loadtest/send.py`` (one request) or the load generator.
"""

from __future__ import annotations

import json

import grpc
import numpy as np

from serveoff.errors import ServeoffError
from serveoff.serving.base import WireRequest
from serveoff.serving.kserve import oip
from serveoff.serving.payload import JSON_HEADERS, json_body

PROTOCOLS = ("rest", "grpc", "v1")  # v2 REST, v2 gRPC, V1 REST


def wire_request(base_url: str, grpc_target: str, model: str, input_name: str, protocol: str,
                 batch: np.ndarray) -> WireRequest:  # fmt: skip
    """The request predicting ``batch`` over ``protocol``."""
    if protocol == "v1":
        return WireRequest("rest", base_url, f"/v1/models/{model}:predict", json_body(batch), JSON_HEADERS)
    return oip.wire_request(base_url, grpc_target, model, input_name, protocol, batch)


def decode_reply(protocol: str, body: bytes, output_name: str) -> np.ndarray:
    """The float32 outputs in a reply to ``wire_request``."""
    if protocol != "v1":
        return oip.decode_reply(protocol, body, output_name).astype(np.float32, copy=False)
    try:
        return np.asarray(json.loads(body)["predictions"], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as err:
        raise ServeoffError(f"the V1 reply holds no predictions: {err}") from None


def grpc_ready(target: str, model: str, timeout: float) -> bool:
    """Whether the v2 gRPC ``ModelReady`` of ``model`` says ready."""
    request = oip.ModelReadyRequest(name=model).SerializeToString()
    try:
        with grpc.insecure_channel(target) as channel:
            body = channel.unary_unary(oip.READY_METHOD)(request, timeout=timeout)
    except grpc.RpcError:
        return False
    return oip.ModelReadyResponse.FromString(body).ready
