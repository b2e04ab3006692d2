"""KServe's wire protocols: the Open Inference Protocol v2 (``oip``) over REST and gRPC, and V1 REST.

V1 REST is TF Serving's JSON: the request is byte for byte the body the other servers' REST APIs get.
``WireClient`` sends exactly the prepared request the load generator sends, and hands every failure to
the server's ``diagnose``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import numpy as np
import requests

from serveoff.errors import ServeoffError
from serveoff.serving.base import Client, Diagnose, WireRequest
from serveoff.serving.kserve import oip
from serveoff.serving.payload import JSON_HEADERS, json_body

PROTOCOLS = ("rest", "grpc", "v1")  # v2 REST, v2 gRPC, V1 REST
# Neither side of a gRPC call is the limit on a large batch.
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


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


class WireClient(Client):
    """Sends ``prepare(batch)``'s request and returns ``decode(body)``; every call has a timeout."""

    def __init__(self, prepare: Callable[[np.ndarray], WireRequest], decode: Callable[[bytes], np.ndarray],
                 timeout: float, diagnose: Diagnose) -> None:  # fmt: skip
        self.prepare = prepare
        self.decode = decode
        self.timeout = timeout
        self.diagnose = diagnose
        self.session = requests.Session()
        self.channels: dict[str, grpc.Channel] = {}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        request = self.prepare(np.asarray(batch))
        what = f"{request.protocol} {request.path} at {request.address}"
        body = self._rest(request, what) if request.protocol == "rest" else self._grpc(request, what)
        try:
            return self.decode(body)
        except ServeoffError as err:
            raise self.diagnose(f"{what}: {err}", False) from None

    def _rest(self, request: WireRequest, what: str) -> bytes:
        try:
            response = self.session.post(request.address + request.path, data=request.body,
                                         headers=request.headers, timeout=self.timeout)  # fmt: skip
        except requests.Timeout:
            raise self.diagnose(
                f"{what} got no answer within the {self.timeout:g} s timeout", False
            ) from None
        except requests.ConnectionError as err:
            raise self.diagnose(f"{what} failed: {err}", True) from None
        except requests.RequestException as err:
            raise self.diagnose(f"{what} failed: {err}", False) from None
        if response.status_code != 200:
            raise self.diagnose(f"{what} returned HTTP {response.status_code}: {response.text[:200]}", False)
        return response.content

    def _grpc(self, request: WireRequest, what: str) -> bytes:
        if request.address not in self.channels:
            self.channels[request.address] = grpc.insecure_channel(request.address, options=GRPC_OPTIONS)
        call = self.channels[request.address].unary_unary(request.path)
        try:
            return call(request.body, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self.diagnose(
                    f"{what} got no answer within the {self.timeout:g} s timeout", False
                ) from None
            lost = err.code() == grpc.StatusCode.UNAVAILABLE
            raise self.diagnose(f"{what} failed: {err.code().name}: {err.details()}", lost) from None

    def close(self) -> None:
        self.session.close()
        for channel in self.channels.values():
            channel.close()


def grpc_ready(target: str, model: str, timeout: float) -> bool:
    """Whether the v2 gRPC ``ModelReady`` of ``model`` says ready."""
    request = oip.ModelReadyRequest(name=model).SerializeToString()
    try:
        with grpc.insecure_channel(target) as channel:
            body = channel.unary_unary(oip.READY_METHOD)(request, timeout=timeout)
    except grpc.RpcError:
        return False
    return oip.ModelReadyResponse.FromString(body).ready
