"""KServe's Python ModelServer, started natively from its own virtualenv (``.venv-kserve``, made by
``setup.sh``): kserve 0.21.0 pins psutil, protobuf and grpcio-tools older than serveoff's, and a server
runs in a process of its own anyway. One class per runtime: ``kserve`` serves the TorchScript file (as
TorchServe does), ``kserve-onnx`` the ONNX export (as ``onnx:inprocess`` runs it); all else is shared.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import requests

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.serving.base import (
    Endpoints,
    Launch,
    RestGrpcServer,
    WireRequest,
    check_protocol,
)
from serveoff.serving.kserve import client as wire
from serveoff.serving.kserve.config import (
    HOST,
    METRICS_PATH,
    PORT_COUNT,
    Ports,
    Runtime,
    check_batching,
    write_config,
)
from serveoff.serving.process import (
    ManagedProcess,
    ServerError,
    diagnosis,
    ensure_port_free,
    wait_until_ready,
)
from serveoff.serving.resources import ServerConfig, validate

KSERVE_VERSION = "0.21.0"  # setup.sh and the Dockerfile install this release
VENV_ENV = "SERVEOFF_KSERVE_VENV"  # another KServe virtualenv than the repository's .venv-kserve
ALL_ADDRESSES = "0.0.0.0"  # in a container: reachable through the ports the launcher publishes
PROBE_TIMEOUT_S = 2.0
VERSIONS_SCRIPT = (
    "from importlib.metadata import version as v\nfor p in ('kserve', {runtime!r}):\n    print(p, v(p))"
)


def venv() -> Path:
    """KServe's virtualenv: ``$SERVEOFF_KSERVE_VENV``, else ``.venv-kserve`` beside serveoff's sources
    (where setup.sh makes it), else in the current directory (serveoff installed elsewhere)."""
    if os.environ.get(VENV_ENV):
        return Path(os.environ[VENV_ENV])
    beside = Path(__file__).resolve().parents[2] / ".venv-kserve"
    return beside if beside.is_dir() else Path.cwd() / ".venv-kserve"


def venv_python() -> Path:
    """The Python of KServe's virtualenv, with kserve at its pinned version; one clear line otherwise."""
    python = venv() / "bin" / "python"
    if not os.access(python, os.X_OK):
        raise ServeoffError(f"KServe's virtualenv {venv()} is missing: run ./setup.sh")
    found = list(venv().glob(f"lib/python*/site-packages/kserve-{KSERVE_VERSION}.dist-info"))
    if not found:
        raise ServeoffError(f"kserve {KSERVE_VERSION} is not installed in {venv()}: run ./setup.sh")
    return python


class KServe(RestGrpcServer):
    """KServe's ModelServer on each model's TorchScript file, under one ``ServerConfig``."""

    name = "kserve"
    title = "KServe"
    framework = "torch"
    protocols: ClassVar[tuple[str, ...]] = wire.PROTOCOLS
    runtime: ClassVar[Runtime] = Runtime("torchscript", "torch", None)
    port_count = PORT_COUNT
    port_layout = Ports.from_base
    metrics_path = METRICS_PATH
    default_port_base = 8090  # REST 8090, gRPC 8091: clear of TorchServe's, TF Serving's and locust's
    default_image = f"serveoff-kserve:{KSERVE_VERSION}"  # serving/kserve/Dockerfile
    no_rollout: ClassVar[str] = (
        "KServe's ModelServer serves one version per model: a rollout is a new InferenceService "
        "(Kubernetes), which has no native equivalent here; not supported"
    )

    @classmethod
    def check_installed(cls) -> None:
        venv_python()

    @classmethod
    def check_config(cls, config: ServerConfig) -> None:
        check_batching(config)

    def write_launch(self) -> Launch:
        self.check_config(self.config)
        return self._prepare(ALL_ADDRESSES, "python")

    def _prepare(self, bind: str, python: str) -> Launch:
        path, script = write_config(self.models, self.config, self.runtime, self.ports, self.workdir, bind)
        env = {"OMP_NUM_THREADS": str(self.config.threads)} if self.config.threads else {}
        return Launch([python, str(script), str(path)], env)

    @classmethod
    def container_versions(cls, run: Callable[[list[str]], str]) -> dict[str, str]:
        pairs = (line.split() for line in run(["python", "-c", cls._versions_script()]).splitlines())
        found = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
        return {package: found.get(package, "unknown") for package in ("kserve", cls.runtime.package)}

    @classmethod
    def _versions_script(cls) -> str:
        return VERSIONS_SCRIPT.format(runtime=cls.runtime.package)

    def start(self, timeout: float = 180.0) -> None:
        if self.processes():
            raise ServeoffError(f"{self.title} in {self.workdir} is already running; stop it first")
        validate(self.config)
        self.check_config(self.config)
        python = venv_python()
        for port, what in ((self.ports.rest, "REST"), (self.ports.grpc, "gRPC")):
            ensure_port_free(port, f"{self.title} {what}")
        launch = self._prepare(HOST, str(python))
        self.log_path.unlink(missing_ok=True)  # an old run's failures must not look like this one's
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | launch.env
        self._proc = ManagedProcess(launch.argv, self.log_path, env=env, cwd=self.workdir,
                                    cpus=self.config.cpus)  # fmt: skip
        self._proc.start()
        try:
            wait_until_ready(self.answering, self._proc, what=self.title, timeout=timeout)
        except BaseException:
            self._proc.stop()
            raise

    def answering(self) -> bool:
        """Every model is ready over v2 REST (``/v2/models/{m}/ready``) and v2 gRPC (``ModelReady``)."""
        for model in self.models:
            try:
                url = f"{self.endpoints.rest}/v2/models/{model.name}/ready"
                if requests.get(url, timeout=PROBE_TIMEOUT_S).status_code != 200:
                    return False
            except requests.RequestException:
                return False
            if not wire.grpc_ready(self.endpoints.grpc, model.name, PROBE_TIMEOUT_S):
                return False
        return True

    @classmethod
    def wire_request(
        cls, endpoints: Endpoints, layout: ArtifactLayout, protocol: str, batch: np.ndarray
    ) -> WireRequest:
        check_protocol(protocol, cls.protocols)
        name = require_manifest(layout)["input"]["name"]
        return wire.wire_request(endpoints.rest, endpoints.grpc, layout.name, name, protocol, batch)

    @classmethod
    def decode_reply(cls, layout: ArtifactLayout, protocol: str, body: bytes) -> np.ndarray:
        check_protocol(protocol, cls.protocols)
        return wire.decode_reply(protocol, body, require_manifest(layout)["output"]["name"])

    def versions(self) -> dict[str, str]:
        """kserve's and the runtime's versions, read by the interpreter that runs the server."""
        python = venv_python()

        def run(argv: list[str]) -> str:
            try:
                done = subprocess.run([str(python), *argv[1:]], capture_output=True, text=True, timeout=60,
                                      check=True)  # fmt: skip
            except (OSError, subprocess.SubprocessError) as err:
                raise ServeoffError(f"cannot read KServe's versions with {python}: {err}") from None
            return done.stdout

        return self.container_versions(run)

    def diagnose(self, problem: str, lost: bool = False) -> ServerError:
        """A ``ServerError`` for a failed request: whether KServe died (with its log tail) or runs."""
        return diagnosis(self._proc, self.title, problem, lost)


class KServeOnnx(KServe):
    """KServe's ModelServer on each model's ONNX export, run by ONNX Runtime."""

    name = "kserve-onnx"
    title = "KServe + ONNX Runtime"
    framework = "onnx"
    runtime: ClassVar[Runtime] = Runtime("onnx", "onnxruntime", "onnx:inprocess")
    default_port_base = 8092  # REST 8092, gRPC 8093
