"""The one way to send one prepared ``WireRequest`` and read its whole reply, outside the load loops.

The product uses it to check every server's answer before measuring (``bench.check_answers``), and the
tests use it to talk to the servers: both send the very bytes the load generator sends. REST goes over
the load generator's own keep-alive connection (``loadtest/http.py``), gRPC over a channel with
``GRPC_OPTIONS``.
"""

from __future__ import annotations

import grpc

from serveoff.errors import ServeoffError
from serveoff.loadtest.http import HttpConnection
from serveoff.loadtest.http import prepare as prepare_http
from serveoff.serving.base import WireRequest

# Neither side of a gRPC call is the limit on a large batch (the servers accept messages of any size).
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class SendError(ServeoffError):
    """A request that got no successful reply.

    ``lost``: the connection itself failed (the server may be dying); ``timeout``: no reply in time;
    ``rejected``: the server refused the request itself (HTTP 4xx, gRPC INVALID_ARGUMENT or NOT_FOUND).
    """

    def __init__(self, message: str, *, lost: bool = False, timeout: bool = False,
                 rejected: bool = False) -> None:  # fmt: skip
        super().__init__(message)
        self.lost, self.timeout, self.rejected = lost, timeout, rejected


class _ReplyConnection(HttpConnection):
    """``HttpConnection`` that keeps the reply's body (the load loops only count it)."""

    def __init__(self, request: WireRequest, timeout_s: float) -> None:
        prepared = prepare_http(request.address, request.path, request.headers, request.body)
        super().__init__(prepared, timeout_s)
        self.body = bytearray()

    def on_message_begin(self) -> None:  # httptools' callback: a new reply
        self.body.clear()

    def on_body(self, chunk: bytes) -> None:  # httptools' callback
        self.body += chunk


def send(request: WireRequest, timeout_s: float) -> bytes:
    """``request``'s successful reply body; a ``SendError`` saying what failed otherwise."""
    what = f"{request.protocol} {request.path} at {request.address}"
    if request.protocol == "rest":
        return _send_rest(request, timeout_s, what)
    return _send_grpc(request, timeout_s, what)


def _send_rest(request: WireRequest, timeout_s: float, what: str) -> bytes:
    connection = _ReplyConnection(request, timeout_s)
    try:
        failure = connection.exchange()
    finally:
        connection.close()
    if failure is None:
        return bytes(connection.body)
    if failure == "timeout":
        raise SendError(f"{what} got no answer within the {timeout_s:g} s timeout", timeout=True)
    if not failure.startswith("HTTP "):
        raise SendError(f"{what} failed: {failure}", lost=True)
    text = bytes(connection.body).decode("utf-8", errors="replace")[:300]
    rejected = int(failure.split()[1]) < 500
    raise SendError(f"{what} returned {failure}: {text}", rejected=rejected)


def _send_grpc(request: WireRequest, timeout_s: float, what: str) -> bytes:
    with grpc.insecure_channel(request.address, options=GRPC_OPTIONS) as channel:
        try:
            return channel.unary_unary(request.path)(request.body, timeout=timeout_s)
        except grpc.RpcError as err:
            raise _grpc_error(err, timeout_s, what) from None


def _grpc_error(err: grpc.RpcError, timeout_s: float, what: str) -> SendError:
    code = err.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return SendError(f"{what} got no answer within the {timeout_s:g} s timeout", timeout=True)
    return SendError(
        f"{what} failed ({code.name}): {err.details()}",
        lost=code == grpc.StatusCode.UNAVAILABLE,
        rejected=code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND),
    )
