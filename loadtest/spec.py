"""The load spec: what every load-generator process runs for one load point, typed, and its message form.

The controller builds one ``LoadSpec`` per point and sends it to every generator in locust's
``serveoff_prepare`` message; ``to_message()`` and ``from_message()`` are that message's encoding
(msgpack: the request body stays bytes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serveoff.loadtest.plan import OPEN, LoadPoint


@dataclass(frozen=True)
class InProcess:
    """How an in-process baseline loads its model and decodes the request body into its input batch."""

    framework: str
    model: str
    artifact: str  # the artifact directory
    config: dict  # ServerConfig.to_json()
    instances: int  # model threads
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def from_json(cls, doc: dict) -> InProcess:
        """From ``Subject.request["inprocess"]`` (or a message's copy of it)."""
        return cls(**doc | {"shape": tuple(doc["shape"])})


@dataclass(frozen=True)
class LoadSpec:
    """One load point as the load generators run it."""

    kind: str  # "rest", "grpc" or "inprocess"
    address: str  # REST: http://host:port; gRPC: host:port; in-process: ""
    path: str  # REST: the URL path; gRPC: the method's full name
    body: bytes  # the request, prepared once
    headers: dict[str, str]
    id: str  # unique per point and phase: windows are matched to it
    name: str  # what locust's web UI shows
    load: LoadPoint
    users: int  # locust users: the concurrency (closed loop) or one per generator process (open loop)
    window_s: float
    max_windows: int
    timeout_s: float
    seed: int
    ui: bool = False  # locust's web UI is on: fire its request event for every request
    inprocess: InProcess | None = None

    @property
    def open_loop(self) -> bool:
        return self.load.loop == OPEN

    @classmethod
    def from_request(cls, request: dict, **fields: Any) -> LoadSpec:
        """The spec of ``Subject.request`` (kind, address, path, body, headers, inprocess) and ``fields``."""
        wire = {key: request[key] for key in ("kind", "address", "path", "body", "headers")}
        return cls(**wire, inprocess=_inprocess(request.get("inprocess")), **fields)

    def to_message(self) -> dict:
        """The spec as locust's message data (plain types, the body as bytes)."""
        data = asdict(self)
        data["load"] = self.load.to_json()
        return data

    @classmethod
    def from_message(cls, data: dict) -> LoadSpec:
        """The spec ``to_message()`` encoded."""
        fields = dict(data)
        fields["load"] = LoadPoint(**fields["load"])
        fields["body"] = bytes(fields["body"])
        fields["inprocess"] = _inprocess(fields.get("inprocess"))
        return cls(**fields)


def _inprocess(how: dict | None) -> InProcess | None:
    return InProcess.from_json(how) if how else None
