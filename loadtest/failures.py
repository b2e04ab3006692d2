"""The kind a failed gRPC request is counted under: a server's refusal under load is not a lost connection."""

from __future__ import annotations

import re

import grpc

# A server's own words for a full queue: TF Serving's batch queue (UNAVAILABLE) and TorchServe's job queue
# (INTERNAL over gRPC). A lost connection is UNAVAILABLE too, in gRPC's own words, so the words decide.
QUEUE_FULL = re.compile(r"queue to which this task was submitted is full|has no worker to serve inference")


def grpc_error(code: grpc.StatusCode, details: str) -> str:
    """``timeout``, ``overloaded (gRPC UNAVAILABLE: queue full)`` when the server refused the request for a
    full queue, else ``gRPC <code>`` (a lost connection: ``gRPC UNAVAILABLE``)."""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "timeout"
    if QUEUE_FULL.search(details):
        return f"overloaded (gRPC {code.name}: queue full)"
    return f"gRPC {code.name}"
