"""The small interface every server implements; a third server is one more folder behind it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import psutil

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.spec import InputSpec
from serveoff.serving.process import ManagedProcess, ServerError
from serveoff.serving.resources import ServerConfig

PROTOCOLS = ("rest", "grpc")
# What serveoff's test doubles put in the version they report, so no figure of theirs passes for the real
# server's (the TF Serving double reports 0.0.0-serveoff-test-<kind>).
TEST_DOUBLE_MARK = "serveoff-test-"


def is_test_double(version: str) -> bool:
    """Whether a reported version (or a point's ``source``) comes from one of serveoff's test doubles."""
    return TEST_DOUBLE_MARK in version


def check_protocol(protocol: str, protocols: tuple[str, ...] = PROTOCOLS) -> None:
    """One clear line for a protocol the server (speaking ``protocols``) does not speak."""
    if protocol not in protocols:
        raise ServeoffError(f"unknown protocol {protocol!r}; choose one of: {', '.join(protocols)}")


@dataclass(frozen=True)
class Endpoints:
    """Where a running server answers (all on 127.0.0.1)."""

    rest: str  # base URL
    grpc: str  # host:port
    metrics: str  # Prometheus URL

    @classmethod
    def on(cls, host: str, rest_port: int, grpc_port: int, metrics_path: str) -> Endpoints:
        """A server's addresses on ``host``: REST and gRPC ports, and metrics served by REST's port."""
        rest = f"http://{host}:{rest_port}"
        return cls(rest=rest, grpc=f"{host}:{grpc_port}", metrics=f"{rest}{metrics_path}")

    def to_json(self) -> dict:
        return {"rest": self.rest, "grpc": self.grpc, "metrics": self.metrics}


@dataclass(frozen=True)
class WireRequest:
    """One request exactly as it goes on the wire: prepared once, sent many times by the load generator."""

    protocol: str  # "rest" or "grpc"
    address: str  # REST: the base URL; gRPC: host:port
    path: str  # REST: the URL path; gRPC: the full method name
    body: bytes  # the serialized request
    headers: dict[str, str]  # REST headers (none for gRPC)


@dataclass(frozen=True)
class Launch:
    """How a container runs a server: the command (on the image's PATH) and its environment.

    Paths in it are the host's: the launcher mounts them at the same places in the container.
    """

    argv: list[str]
    env: dict[str, str]


class Server(ABC):
    """One model server, serving built artifacts under a ``ServerConfig``.

    Natively, ``start`` launches it as local processes; in a container, ``serving/container.py`` runs
    what ``write_launch`` prepares, in the image ``default_image`` names.
    """

    name: ClassVar[str]
    title: ClassVar[str]  # how reports name it, e.g. "TF Serving"
    status: ClassVar[str | None] = None  # what a user choosing this server should know about its upkeep
    framework: ClassVar[str]  # the in-process baseline that runs the same artifact ("torch" or "tf")
    protocols: ClassVar[tuple[str, ...]] = PROTOCOLS  # what it speaks; "rest" and "grpc" by default
    port_count: ClassVar[int]  # consecutive ports from ``port_base`` the server uses
    default_port_base: ClassVar[int]  # where `serveoff up` puts it
    default_image: ClassVar[str]  # the image `serveoff up --docker` runs (built by docker compose)
    # the least settling warm-up it needs before its first point, whatever --settle-floor says (the cap still
    # applies): a JIT-compiling server (TorchServe's JVM) keeps getting faster for its first tens of seconds
    settle_floor_s: ClassVar[float] = 0.0
    # the source files of its packaging step: a change to them rebuilds every model (see ``package``)
    packaging_code: ClassVar[tuple[Path, ...]] = ()
    # What `serveoff probe` needs to know of it. ``probe_module``: the module beside it with its
    # ``ProbedServer``, ``roll_out`` and ``serving_version`` (see loadtest/probes/servers.py), if any;
    # ``no_rollout``: why it has no rollout serveoff can drive, when it has none; ``inference_mark``: a word
    # of the command line of the process that runs the model, when that is not its root process.
    probe_module: ClassVar[str | None] = None
    no_rollout: ClassVar[str] = "no rollout serveoff can drive natively; not supported"
    inference_mark: ClassVar[str | None] = None

    def __init__(
        self, models: list[ArtifactLayout], config: ServerConfig, workdir: Path, port_base: int
    ) -> None:
        self.models = models
        self.config = config
        self.workdir = workdir
        self.port_base = port_base
        self.log_path = self.log_file(workdir)  # where it writes its output when it runs natively

    @classmethod
    def log_file(cls, workdir: Path) -> Path:
        """Where the server's output goes when it runs natively in ``workdir``."""
        return workdir / f"{cls.name}.log"

    @classmethod
    def package(cls, layout: ArtifactLayout, input_spec: InputSpec) -> dict[str, Path]:
        """The build's packaging step for this server: write what it serves, made from the built artifacts,
        into ``layout.server_dir(name)``; returns the files written, for the manifest (default: none, the
        server serves the artifacts as they are)."""
        return {}

    @classmethod
    @abstractmethod
    def check_installed(cls) -> None:
        """One clear line when the server cannot run here (a missing binary), before anything starts."""

    @classmethod  # noqa: B027 - most servers honour every setting
    def check_config(cls, config: ServerConfig) -> None:
        """One clear line for a setting this server cannot honour, before anything starts (default: any)."""

    @classmethod
    @abstractmethod
    def endpoints_at(cls, host: str, port_base: int) -> Endpoints:
        """The addresses of the server on ``host`` with ports from ``port_base``."""

    @property
    def endpoints(self) -> Endpoints:
        """The server's addresses (on 127.0.0.1)."""
        return self.endpoints_at("127.0.0.1", self.port_base)

    @abstractmethod
    def public_ports(self) -> list[int]:
        """The ports clients use (inference and metrics); a container publishes these and no others."""

    @abstractmethod
    def write_launch(self) -> Launch:
        """Write the server's configuration into ``workdir`` for running in a container, and how to run it."""

    @abstractmethod
    def answering(self) -> bool:
        """Whether every model answers on the public ports (the readiness test that works from outside)."""

    @classmethod
    @abstractmethod
    def container_versions(cls, run: Callable[[list[str]], str]) -> dict[str, str]:
        """Like ``versions``, read in a container: ``run`` executes a command there and returns its output."""

    @abstractmethod
    def start(self, timeout: float = 180.0) -> None:
        """Write its configuration, launch it, return once every model answers; raise with the log tail."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every process of the server."""

    @classmethod
    @abstractmethod
    def wire_request(
        cls, endpoints: Endpoints, layout: ArtifactLayout, protocol: str, batch: np.ndarray
    ) -> WireRequest:
        """The request a client of ``protocol`` sends to predict ``batch`` with ``layout``'s model."""

    @classmethod
    @abstractmethod
    def decode_reply(cls, layout: ArtifactLayout, protocol: str, body: bytes) -> np.ndarray:
        """The model outputs in a successful reply to ``wire_request``."""

    def metrics(self) -> dict[str, float]:
        """The server's own Prometheus metrics, as ``name{labels}`` -> value; a failed scrape is diagnosed."""
        from serveoff.serving.metrics import scrape  # requests imports ssl: not before locust patches it

        try:
            return scrape(self.endpoints.metrics)
        except ServeoffError as err:
            raise self.diagnose(str(err), True) from None

    @abstractmethod
    def processes(self) -> list[psutil.Process]:
        """The server's live processes, for CPU and memory accounting."""

    @abstractmethod
    def diagnose(self, problem: str, lost: bool = False) -> ServerError:
        """The error for a failed request (``lost``: the connection itself failed): it carries the server's
        log tail when the server died, and says so when it still runs."""

    def pids(self) -> list[int]:
        """PIDs to record so that ``serveoff down`` can stop exactly this server (default: its processes')."""
        return [proc.pid for proc in self.processes()]

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the server (its own version first) and the runtime it executes models with."""

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RestGrpcPorts(Protocol):
    """A server's two public ports."""

    rest: int
    grpc: int


class RestGrpcServer(Server):
    """A server of one process on two ports: REST (which also serves its metrics, at ``metrics_path``) and
    gRPC, numbered from ``port_base`` as its ``port_layout`` says."""

    metrics_path: ClassVar[str]
    port_layout: ClassVar[Callable[[int], RestGrpcPorts]]  # the ports from a base port

    def __init__(
        self, models: list[ArtifactLayout], config: ServerConfig, workdir: Path, port_base: int
    ) -> None:
        super().__init__(models, config, workdir, port_base)
        self.ports = type(self).port_layout(port_base)
        self._proc: ManagedProcess | None = None

    @classmethod
    def endpoints_at(cls, host: str, port_base: int) -> Endpoints:
        ports = cls.port_layout(port_base)
        return Endpoints.on(host, ports.rest, ports.grpc, cls.metrics_path)

    def public_ports(self) -> list[int]:
        return [self.ports.rest, self.ports.grpc]

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def processes(self) -> list[psutil.Process]:
        return self._proc.processes() if self._proc is not None else []
