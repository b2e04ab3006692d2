"""Target names a benchmark can use: a server over a protocol, or an in-process baseline.

``torchserve:rest``, ``torchserve:grpc``, ``tfserving:rest``, ``tfserving:grpc``, ``kserve:rest`` (the Open
Inference Protocol v2 over REST), ``kserve:grpc`` (v2 over gRPC), ``kserve:v1`` (V1 REST), the same three of
``kserve-onnx``, and every in-process runtime of ``serving/runtimes/`` (``torch:inprocess``,
``torch:compiled``, ``tf:inprocess``, ``tf:xla``, ``onnx:inprocess``). A server is one more entry in
``SERVERS`` (and in ``SERVER_PROTOCOLS`` when it speaks more than REST and gRPC) and one more folder;
another runtime is one more file in ``serving/runtimes/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from serveoff.errors import ServeoffError
from serveoff.serving import runtimes
from serveoff.serving.base import PROTOCOLS, Server

SERVERS: dict[str, str] = {
    "torchserve": "serveoff.serving.torchserve.server:TorchServe",
    "tfserving": "serveoff.serving.tfserving.server:TFServing",
    "kserve": "serveoff.serving.kserve.server:KServe",
    "kserve-onnx": "serveoff.serving.kserve.server:KServeOnnx",
}
# Each server's protocols (its class's ``protocols``), known without importing it; the default lists
# (``serveoff run`` without --target) measure "rest" and "grpc", so a third protocol is one to ask for.
_V2_AND_V1 = ("rest", "grpc", "v1")
SERVER_PROTOCOLS: dict[str, tuple[str, ...]] = {name: PROTOCOLS for name in SERVERS} | {
    "kserve": _V2_AND_V1,
    "kserve-onnx": _V2_AND_V1,
}
BASELINES = runtimes.systems()  # the systems of the in-process runtimes: torch, tf, onnx


@dataclass(frozen=True)
class Target:
    """What a load point is aimed at: ``system`` (a server or a baseline) and ``protocol``."""

    system: str
    protocol: str

    @property
    def name(self) -> str:
        return f"{self.system}:{self.protocol}"

    @property
    def is_baseline(self) -> bool:
        """Whether this is an in-process runtime rather than a server."""
        return self.name in runtimes.RUNTIMES


ALL_TARGETS = tuple(
    [Target(server, protocol) for server in SERVERS for protocol in SERVER_PROTOCOLS[server]]
    + [Target(*name.split(":")) for name in runtimes.names()]
)


def parse_target(text: str) -> Target:
    """The target called ``text``; a clear error lists the valid names otherwise."""
    for target in ALL_TARGETS:
        if target.name == text:
            return target
    raise ServeoffError(f"unknown target {text!r}; choose from: {', '.join(t.name for t in ALL_TARGETS)}")


def server_class(name: str) -> type[Server]:
    """The ``Server`` implementation called ``name`` (imported on first use)."""
    if name not in SERVERS:
        raise ServeoffError(f"unknown server {name!r}; choose from: {', '.join(SERVERS)}")
    module, cls = SERVERS[name].split(":")
    return getattr(import_module(module), cls)
