"""Minimal reference clients for ``accuracy.py``, in a process without gevent (run by it, not by hand).

``python benchmarks/reference.py KIND SECONDS ADDRESS PATH BODY_FILE RATE WARMUP`` prints one JSON line
(``RATE``: requests/s for ``rest-open``, else ignored; ``WARMUP``: seconds of the same loop first, on the
same connection, not counted):

- ``rest``: a sequential loop on one keep-alive socket, the request prepared once as bytes, the reply read
  by httptools; latency from just before each send.
- ``rest-open``: the same socket at a constant ``RATE``, each latency timed from the request's scheduled
  time (a request whose time has come is sent at once; none is skipped).
- ``grpc``: a plain sequential grpcio loop on one channel, bytes in and bytes out.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import httptools
import numpy as np


class _Reply:
    """httptools callbacks: whether the reply in the buffer is complete, and its status."""

    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


def rest_connection(address: str) -> socket.socket:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def rest_request(address: str, path: str, body: bytes) -> bytes:
    host = address.removeprefix("http://")
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


def exchange(sock: socket.socket, request: bytes) -> int:
    """Send ``request`` and read one whole reply; its status code."""
    sock.sendall(request)
    reply = _Reply()
    parser = httptools.HttpResponseParser(reply)
    while not reply.done:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        parser.feed_data(chunk)
    return parser.get_status_code()


def rest_closed(seconds: float, address: str, path: str, body: bytes, warmup: float) -> list[float]:
    sock, request = rest_connection(address), rest_request(address, path, body)
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        exchange(sock, request)
    latencies, end = [], time.perf_counter() + seconds
    while (started := time.perf_counter()) < end:
        if exchange(sock, request) != 200:
            raise RuntimeError("a reply other than 200")
        latencies.append(time.perf_counter() - started)
    sock.close()
    return latencies


def rest_open(
    seconds: float, address: str, path: str, body: bytes, rate: float, warmup: float
) -> list[float]:
    sock, request = rest_connection(address), rest_request(address, path, body)
    latencies, start = [], time.perf_counter() + 0.05
    skipped = int(warmup * rate)  # the warm-up's arrivals, on the same schedule, not counted
    for index in range(skipped + int(seconds * rate)):
        scheduled = start + index / rate
        wait = scheduled - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if exchange(sock, request) != 200:
            raise RuntimeError("a reply other than 200")
        if index >= skipped:
            latencies.append(time.perf_counter() - scheduled)
    sock.close()
    return latencies


def grpc_closed(seconds: float, address: str, method: str, body: bytes, warmup: float) -> list[float]:
    import grpc

    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(method)
        end = time.perf_counter() + warmup  # connected and warm before the clock starts
        while time.perf_counter() < end:
            call(body, timeout=10)
        latencies, end = [], time.perf_counter() + seconds
        while (started := time.perf_counter()) < end:
            call(body, timeout=10)
            latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    kind, seconds, address, path, body_file, rate, warmup = sys.argv[1:8]
    body = Path(body_file).read_bytes()
    if kind == "rest":
        found = rest_closed(float(seconds), address, path, body, float(warmup))
    elif kind == "rest-open":
        found = rest_open(float(seconds), address, path, body, float(rate), float(warmup))
    else:
        found = grpc_closed(float(seconds), address, path, body, float(warmup))
    micros = np.array(found) * 1e6
    print(json.dumps({"p50_us": float(np.percentile(micros, 50)), "p99_us": float(np.percentile(micros, 99)),
                      "mean_us": float(micros.mean()), "rps": len(found) / float(seconds),
                      "requests": len(found)}))  # fmt: skip


if __name__ == "__main__":
    main()
