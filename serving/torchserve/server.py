"""TorchServe, started natively from the venv: its Python wrapper, its Java frontend and its Python workers.

Everything it writes lives under ``workdir`` (``config.properties``, ``model-store/``, ``torchserve.log``
and ``logs/``) except its temp directory (unpacked archives and worker sockets), which gets a short
private path of its own so that Unix socket paths stay short and two servers never share one.
"""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import ClassVar

import numpy as np
import psutil
import requests

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.models.spec import InputSpec
from serveoff.serving.base import (
    Endpoints,
    Launch,
    Server,
    WireRequest,
    check_protocol,
)
from serveoff.serving.process import ManagedProcess, ServerError, ensure_port_free, wait_until_ready
from serveoff.serving.resources import ServerConfig, validate
from serveoff.serving.torchserve import package as packaging
from serveoff.serving.torchserve.client import (
    decode_reply,
    grpc_ping,
    input_spec,
    wire_request,
)
from serveoff.serving.torchserve.config import (
    HOST,
    PORT_COUNT,
    WORKER_ENV_KEYS,
    Ports,
    properties,
    render,
    worker_env,
)
from serveoff.serving.torchserve.java import java_executable, java_version, parse_java_version

LOAD_FAILED = re.compile(r"Failed to load model (\S+), exception (.*)")
WORKER_DIED = "Backend worker process died"
PROBE_TIMEOUT_S = 2.0
SETTLE_S = 2.0  # how long a server that stopped answering may take to finish dying
ALL_ADDRESSES = "0.0.0.0"  # in a container: reachable through the ports the launcher publishes
# Prints the versions of TorchServe and torch of the Python that runs the workers (in a container).
VERSIONS_SCRIPT = (
    "from importlib.metadata import version as v; "
    "print('torchserve', v('torchserve')); print('torch', v('torch'))"
)


def load_failure(log_tail: str) -> str | None:
    """Why start-up can no longer succeed, from the log: a worker that died loading its model."""
    match = LOAD_FAILED.search(log_tail)
    if match:
        return f"model {match[1]} failed to load: {match[2][:300]}"
    if WORKER_DIED in log_tail:
        return "a worker process died while loading its model"
    return None


def torchserve_executable() -> Path:
    """The ``torchserve`` launcher of this interpreter's environment, so its workers run this Python."""
    path = Path(sysconfig.get_path("scripts")) / "torchserve"
    if not os.access(path, os.X_OK):
        raise ServeoffError(f"{path} is missing: install TorchServe into this environment (./setup.sh)")
    return path


class TorchServe(Server):
    """TorchServe serving the models' .mar archives under one ``ServerConfig``."""

    name = "torchserve"
    title = "TorchServe"
    status = (
        "TorchServe's repository (pytorch/serve) was archived on 7 August 2025 and the project is in limited "
        "maintenance: no planned updates, bug fixes or security patches."
    )
    framework = "torch"
    port_count: ClassVar[int] = PORT_COUNT
    default_port_base: ClassVar[int] = 8080
    # The official pytorch/torchserve:0.12.0-cpu brought up to serveoff's Python and torch
    # (serving/torchserve/Dockerfile): TorchScript is not forward compatible, so the image must run the
    # torch that built the archives.
    default_image: ClassVar[str] = "serveoff-torchserve:0.12.0-torch2.13.0"
    settle_floor_s: ClassVar[float] = 30.0  # its JVM keeps getting faster for 20-30 s after start
    packaging_code: ClassVar[tuple[Path, ...]] = (Path(packaging.__file__), packaging.HANDLER)
    probe_module: ClassVar[str | None] = "serveoff.serving.torchserve.probe"
    inference_mark: ClassVar[str | None] = "model_service_worker"  # its Python worker runs the model

    @classmethod
    def package(cls, layout: ArtifactLayout, input_spec: InputSpec) -> dict[str, Path]:
        """The model's .mar: its TorchScript file, serveoff's handler and the wire spec."""
        store = packaging.model_store(layout)
        return {"mar": packaging.make_mar(layout.name, layout.torchscript, input_spec, store)}

    def __init__(
        self, models: list[ArtifactLayout], config: ServerConfig, workdir: Path, port_base: int
    ) -> None:
        super().__init__(models, config, workdir, port_base)
        self.ports = Ports.from_base(port_base)
        self.config_path = workdir / "config.properties"
        self._proc: ManagedProcess | None = None
        self._java: psutil.Process | None = None
        self._java_version: str | None = None
        self._tmp: Path | None = None

    @classmethod
    def check_installed(cls) -> None:
        java_version(java_executable())
        torchserve_executable()

    @classmethod
    def endpoints_at(cls, host: str, port_base: int) -> Endpoints:
        ports = Ports.from_base(port_base)
        return Endpoints(
            rest=f"http://{host}:{ports.rest}",
            grpc=f"{host}:{ports.grpc}",
            metrics=f"http://{host}:{ports.metrics}/metrics",
        )

    def public_ports(self) -> list[int]:
        return self.ports.public()

    def start(self, timeout: float = 180.0) -> None:
        if self.processes():
            raise ServeoffError(f"TorchServe in {self.workdir} is already running; stop it first")
        validate(self.config)
        java = java_executable()
        self._java_version = java_version(java)
        launcher = torchserve_executable()
        for what, port in self.ports.named().items():
            ensure_port_free(port, what)
        launch = self._prepare(HOST)
        self.log_path.unlink(missing_ok=True)  # an old run's failures must not look like this one's
        self._tmp = Path(tempfile.mkdtemp(prefix="serveoff-ts-"))
        self._proc = ManagedProcess(
            [str(launcher), *launch.argv[1:]], self.log_path, env=self._env(launcher, launch.env),
            cwd=self.workdir, cpus=self.config.cpus,
        )  # fmt: skip
        self._java = None
        try:
            self._proc.start()
            wait_until_ready(self._ready, self._proc, what="TorchServe", timeout=timeout, fatal=load_failure)
        except BaseException:
            self.stop()
            raise

    def write_launch(self) -> Launch:
        return self._prepare(ALL_ADDRESSES)

    @classmethod
    def container_versions(cls, run: Callable[[list[str]], str]) -> dict[str, str]:
        pairs = (line.split() for line in run(["python", "-c", VERSIONS_SCRIPT]).splitlines())
        found = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
        return {
            "torchserve": found.get("torchserve", "unknown"),
            "torch": found.get("torch", "unknown"),
            "java": parse_java_version(run(["java", "-version"])),
        }

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _ping_healthy(self) -> bool:
        try:
            response = requests.get(f"{self.endpoints.rest}/ping", timeout=PROBE_TIMEOUT_S)
            return response.status_code == 200 and response.json().get("status") == "Healthy"
        except (requests.RequestException, ValueError):
            return False

    @classmethod
    def wire_request(
        cls, endpoints: Endpoints, layout: ArtifactLayout, protocol: str, batch: np.ndarray
    ) -> WireRequest:
        check_protocol(protocol)
        return wire_request(endpoints.rest, endpoints.grpc, layout.name, input_spec(layout), protocol, batch)

    @classmethod
    def decode_reply(cls, layout: ArtifactLayout, protocol: str, body: bytes) -> np.ndarray:
        check_protocol(protocol)
        return decode_reply(protocol, body, tuple(require_manifest(layout)["output"]["shape"]))

    def processes(self) -> list[psutil.Process]:
        return self._proc.processes() if self._proc is not None else []

    def pids(self) -> list[int]:
        """The started process first (its session holds every process of the server), then the rest."""
        procs = self.processes()
        if self._proc is None or self._proc.popen is None or not procs:
            return []  # never started, or stopped
        return [self._proc.pid] + [p.pid for p in procs if p.pid != self._proc.pid]

    def versions(self) -> dict[str, str]:
        java = self._java_version or java_version(java_executable())
        return {"torchserve": version("torchserve"), "torch": version("torch"), "java": java}

    def diagnose(self, problem: str, lost: bool = False) -> ServerError:
        """The error for a failed client call: with the log tail when TorchServe died, else the log's path.

        ``lost``: the connection failed, so TorchServe may be dying; unless it still answers, it gets a
        moment to finish, so that a crash is reported as one.
        """
        proc = self._proc
        if proc is None:
            return ServerError(f"{problem}; TorchServe was never started")
        gone = self._exit_reason()
        if gone is None and lost and not self._answers():
            deadline = time.monotonic() + SETTLE_S
            while gone is None and time.monotonic() < deadline:
                time.sleep(0.05)
                gone = self._exit_reason()
        if gone:
            return ServerError(
                f"{problem}; TorchServe died ({gone}); log {proc.log_path}:\n{proc.log_tail()}"
            )
        return ServerError(f"{problem}; TorchServe is still running, log {proc.log_path}")

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def _model_store(self) -> Path:
        """``workdir/model-store`` with a link to each model's .mar; a clear error for a missing one."""
        names = self.model_names
        if len(set(names)) != len(names):
            raise ServeoffError(f"TorchServe got the same model twice: {', '.join(names)}")
        store = self.workdir / "model-store"
        store.mkdir(parents=True, exist_ok=True)
        for layout in self.models:
            mar = packaging.mar_of(layout)
            if not mar.is_file():
                raise ServeoffError(f"{mar} is missing; build model {layout.name} with `serveoff build`")
            link = store / mar.name
            link.unlink(missing_ok=True)
            link.symlink_to(mar.resolve())
        return store

    def _prepare(self, bind: str) -> Launch:
        """Write ``config.properties`` and the model store, with the public ports on ``bind``; the
        launcher's command (``torchserve`` on PATH) and the environment it and the workers need."""
        store = self._model_store()
        props = properties(self.config, self.ports, store, self._mars(store), bind)
        self.config_path.write_text(render(props))
        argv = ["torchserve", "--start", "--foreground", "--ncs", "--ts-config", str(self.config_path)]
        logs = str(self.workdir / "logs")
        env = worker_env(self.config) | {
            "TS_CONFIG_FILE": str(self.config_path),  # the launcher prefers it to --ts-config
            "LOG_LOCATION": logs,
            "METRICS_LOCATION": logs,
        }
        return Launch(argv, env)

    def _mars(self, store: Path) -> dict[str, Path]:
        return {layout.name: store / packaging.mar_of(layout).name for layout in self.models}

    def _env(self, launcher: Path, server_env: dict[str, str]) -> dict[str, str]:
        """The native launcher's environment, inherited by Java and the workers: ours without thread
        settings, then the server's own (``_prepare``), this venv first on PATH and a private temp dir."""
        env = {k: v for k, v in os.environ.items() if k not in WORKER_ENV_KEYS}
        return (
            env
            | server_env
            | {
                "PATH": os.pathsep.join([str(launcher.parent), env.get("PATH", "")]),
                "TMPDIR": str(self._tmp),  # the launcher's PID file
                "TEMP": str(self._tmp),  # Java's temp dir: unpacked archives and worker sockets
            }
        )

    def answering(self) -> bool:
        """``/ping`` and gRPC ``Ping`` say Healthy: every model has its minimum of workers up."""
        return self._ping_healthy() and grpc_ping(self.endpoints.grpc, PROBE_TIMEOUT_S) == "Healthy"

    def _ready(self) -> bool:
        ready = self.answering() and all(self._workers_ready(name) for name in self.model_names)
        if ready:
            self._java = next((p for p in self.processes() if _name(p) == "java"), None)
        return ready

    def _workers_ready(self, model: str) -> bool:
        """Whether every worker of ``model`` is READY, and at least as many as asked for."""
        url = f"http://{HOST}:{self.ports.management}/models/{model}"
        try:
            described = requests.get(url, timeout=PROBE_TIMEOUT_S).json()
            workers = [w["status"] for version_ in described for w in version_["workers"]]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return False
        return len(workers) >= (self.config.instances or 1) and all(s == "READY" for s in workers)

    def _exit_reason(self) -> str | None:
        """Why TorchServe is no longer running, or ``None`` while it runs."""
        code = self._proc.exit_code() if self._proc else None
        if code is not None:
            return f"exit code {code}"
        if self._java is not None and not _running(self._java):
            return f"its Java process {self._java.pid} is gone"
        return None

    def _answers(self) -> bool:
        """Whether TorchServe answers HTTP at all (with any status) within a moment."""
        try:
            requests.get(f"{self.endpoints.rest}/ping", timeout=0.5)
            return True
        except requests.RequestException:
            return False


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
