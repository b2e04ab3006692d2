"""Servers in Docker containers, started with the docker SDK behind the same ``Server`` interface.

``ContainerServer(TorchServe(...), options)`` is TorchServe run from its image instead of the venv: the
server still writes its configuration and speaks its protocols; this launcher, shared by every server,
only replaces how it is started, stopped and measured. Every container gets:

- the same CPU set and memory limit (no swap) as every other server of the run: a fair comparison;
- its public ports published on the host's 127.0.0.1 only, at the same numbers inside and outside;
  management ports are never published;
- its work directory and the model artifacts mounted at their host paths (artifacts read-only);
- the host user's uid and gid, so whatever it writes stays the user's.

Cost comes from the container's cgroup through Docker's stats API, not from host processes: the
engine may run elsewhere (Docker Desktop's VM, say).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import numpy as np
import psutil
from docker.errors import DockerException, ImageNotFound, NotFound

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import Endpoints, Server, WireRequest
from serveoff.serving.process import ServerError, Watched, await_ready, ensure_port_free
from serveoff.serving.resources import ServerConfig

LABEL = "serveoff.server"  # on every container serveoff starts: which server it runs
DOCKER_INIT = "/sbin/docker-init"  # what `init=True` runs as the container's PID 1
LOG_LINES = 20
STOP_GRACE_S = 10
STATS_WAIT_S = 3.0  # the engine samples about once a second; a sample later than this means trouble
STATS_KEPT = 600
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_memory(text: str) -> int:
    """A memory limit like ``4g`` or ``512m`` in bytes; one clear line when malformed or too big."""
    match = _MEMORY.match(text)
    if not match:
        raise ServeoffError(f"memory limit {text!r} is malformed; write it like 4g or 512m")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    have = psutil.virtual_memory().total
    if size < 64 * 2**20:
        raise ServeoffError(f"memory limit {text!r} is below 64m, too little for any model server")
    if size > have:
        raise ServeoffError(
            f"memory limit {text!r} is more than this machine has ({have / 2**30:.1f} GiB); lower it"
        )
    return size


@dataclass(frozen=True)
class ContainerOptions:
    """How ``--docker`` runs the servers: one memory limit for every server, and what the user changed."""

    memory: int  # bytes, no swap
    images: dict[str, str] = field(default_factory=dict)  # server -> image instead of its default_image
    mounts: tuple[Path, ...] = ()  # more host paths the images need, read-only at the same place


def container_options(memory: str, images: list[str], mounts: list[Path]) -> ContainerOptions:
    """The options from the command line; one clear line for each bad value."""
    from serveoff.serving.targets import SERVERS

    chosen = {}
    for entry in images:
        server, _, image = entry.partition("=")
        if server not in SERVERS or not image:
            raise ServeoffError(f"--image {entry!r} must be SERVER=IMAGE, SERVER one of {', '.join(SERVERS)}")
        chosen[server] = image
    for path in mounts:
        if not path.exists():
            raise ServeoffError(f"--mount {path} does not exist")
    return ContainerOptions(parse_memory(memory), chosen, tuple(p.resolve() for p in mounts))


def docker_client() -> docker.DockerClient:
    """A client of the Docker engine the environment names; one clear line when none answers."""
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as err:
        reason = str(err).splitlines()[0][:200]
        raise ServeoffError(
            f"cannot reach a Docker engine ({reason}); start Docker, or run the servers natively "
            "without --docker"
        ) from None
    return client


def engine_cpus() -> tuple[int, ...]:
    """The CPUs of the Docker engine's machine, which a container's CPU set may name."""
    return tuple(range(docker_client().info()["NCPU"]))


def check_images(servers: list[str], options: ContainerOptions) -> None:
    """Before anything is built or started: the memory limit fits the engine's machine, and each server's
    image is here and built for the engine's architecture; one clear line when not."""
    from serveoff.serving.targets import server_class

    client = docker_client()
    have = client.info()["MemTotal"]
    if options.memory > have:
        raise ServeoffError(
            f"memory limit {options.memory / 2**30:.1f} GiB is more than the Docker engine's machine has "
            f"({have / 2**30:.1f} GiB); lower --memory"
        )
    found = {}
    for name in servers:
        image = options.images.get(name, server_class(name).default_image)
        found[name] = local_image(client, image, name).attrs.get("Architecture", "unknown")
    check_architectures(found, engine_architecture(client))


def local_image(client: docker.DockerClient, image: str, server: str) -> Any:
    """The image ``server`` runs, from the engine's store; one clear line when it was not built."""
    try:
        return client.images.get(image)
    except ImageNotFound:
        raise ServeoffError(
            f"Docker image {image} is not here; build it with `docker compose build {server}`"
        ) from None


def engine_architecture(client: docker.DockerClient) -> str:
    """The engine's CPU architecture, named as images name theirs (``amd64``, ``arm64``)."""
    return client.version().get("Arch", "unknown")


def check_architectures(images: dict[str, str], engine: str) -> None:
    """One clear line when a server's image (``images``: server -> its image's architecture) is not built
    for the engine's architecture: the engine would run it emulated, and an emulated server beside a native
    one (TF Serving publishes amd64 images only, TorchServe several) is no comparison."""
    foreign = {server: arch for server, arch in images.items() if arch != engine}
    if foreign:
        described = ", ".join(f"{server}'s image is {arch}" for server, arch in foreign.items())
        wanted = next(iter(foreign.values()))
        raise ServeoffError(
            f"{described} but the Docker engine runs {engine}: it would run emulated and the comparison "
            f"would be false; measure on an {wanted} machine, or natively (serveoff run)"
        )


class ContainerUsage:
    """A container's CPU time and memory, from Docker's stats API (its cgroup).

    The engine samples a container about once a second, so a background thread follows the stats
    stream and ``cpu_seconds`` interpolates between the samples around the moment it is asked,
    waiting for the next sample (at most ~1 s) rather than reporting a stale one.
    """

    source = (
        "docker stats: CPU time and memory (without page cache) of the server's container, sampled "
        "about once a second by the engine and interpolated to window boundaries"
    )

    def __init__(self, container: Any) -> None:
        self.container = container
        self._samples: list[tuple[float, float, int]] = []  # (time.monotonic() on arrival, CPU s, bytes)
        self._thread: threading.Thread | None = None
        self._ended = False

    def cpu_seconds(self) -> float:
        moment = time.monotonic()
        self._wait_for_sample_after(moment)
        return _interpolate([(at, cpu) for at, cpu, _ in self._samples], moment)

    def memory_bytes(self) -> int:
        """Usage without the inactive page cache, as ``docker stats`` shows it, at the latest sample."""
        if not self._samples:
            self._wait_for_sample_after(0.0)
        return self._samples[-1][2] if self._samples else 0

    def running(self) -> bool:
        try:
            self.container.reload()
        except DockerException:
            return False
        return self.container.status == "running"

    def _wait_for_sample_after(self, moment: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._follow, daemon=True, name="docker-stats")
            self._thread.start()
        deadline = time.monotonic() + STATS_WAIT_S
        while not self._ended and time.monotonic() < deadline:
            if self._samples and self._samples[-1][0] >= moment:
                return
            time.sleep(0.02)

    def _follow(self) -> None:
        """Record every sample of the stats stream until the container stops."""
        try:
            for stats in self.container.stats(stream=True, decode=True):
                cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
                if cpu is None:
                    continue  # a stopped container's empty sample
                self._samples.append((time.monotonic(), cpu / 1e9, _memory(stats.get("memory_stats", {}))))
                del self._samples[:-STATS_KEPT]
        except DockerException:
            pass
        finally:
            self._ended = True


def _memory(memory: dict) -> int:
    """Usage minus the inactive page cache (cgroup v1 and v2), the figure ``docker stats`` shows."""
    detail = memory.get("stats", {})
    cache = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    return max(0, memory.get("usage", 0) - cache)


def _interpolate(samples: list[tuple[float, float]], moment: float) -> float:
    """The counter at ``moment``, linear between the samples around it (the nearest one outside them)."""
    if not samples:
        return 0.0
    before = [s for s in samples if s[0] <= moment]
    after = [s for s in samples if s[0] > moment]
    if not before or not after:
        return (before or after)[-1 if before else 0][1]
    (t0, v0), (t1, v1) = before[-1], after[0]
    return v0 + (v1 - v0) * (moment - t0) / (t1 - t0)


class ContainerServer:
    """A server run from its Docker image: a launcher that holds the server, not a subclass of it.

    The server writes its configuration (``write_launch``) and speaks its protocols; this launcher starts
    the container, stops it, measures it and diagnoses it, the same way for every server.
    """

    launcher = "docker"

    def __init__(self, server: Server, options: ContainerOptions) -> None:
        self.server = server
        self.memory = options.memory
        self.image = options.images.get(server.name, server.default_image)
        self.mounts = options.mounts
        self.container: Any = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def title(self) -> str:
        return self.server.title

    @property
    def models(self) -> list[ArtifactLayout]:
        return self.server.models

    @property
    def config(self) -> ServerConfig:
        return self.server.config

    @property
    def workdir(self) -> Path:
        return self.server.workdir

    @property
    def endpoints(self) -> Endpoints:
        return self.server.endpoints

    def wire_request(self, endpoints: Endpoints, layout: ArtifactLayout, protocol: str,
                     batch: np.ndarray) -> WireRequest:  # fmt: skip
        return self.server.wire_request(endpoints, layout, protocol, batch)

    def decode_reply(self, layout: ArtifactLayout, protocol: str, body: bytes) -> np.ndarray:
        return self.server.decode_reply(layout, protocol, body)

    def metrics(self) -> dict[str, float]:
        """The server's own metrics, scraped through the published port; a failed scrape is diagnosed."""
        from serveoff.serving.metrics import scrape

        try:
            return scrape(self.endpoints.metrics)
        except ServeoffError as err:
            raise self.diagnose(str(err), True) from None

    def start(self, timeout: float = 180.0) -> None:
        client = docker_client()
        local_image(client, self.image, self.name)
        for port in self.server.public_ports():
            ensure_port_free(port, f"{self.title} published port")
        self.workdir.mkdir(parents=True, exist_ok=True)
        launch = self.server.write_launch()
        self.container = client.containers.create(
            self.image,
            launch.argv[1:],
            entrypoint=launch.argv[:1],  # whatever the image's own entrypoint would have started
            environment=launch.env | {"HOME": "/tmp", "TEMP": "/tmp", "TMPDIR": "/tmp"},
            working_dir=str(self.workdir),
            user=f"{os.getuid()}:{os.getgid()}",
            cpuset_cpus=",".join(map(str, self.config.cpus)) if self.config.cpus else None,
            mem_limit=self.memory,
            memswap_limit=self.memory,
            ports={f"{port}/tcp": ("127.0.0.1", port) for port in self.server.public_ports()},
            volumes=self._volumes(),
            labels={LABEL: self.name},
            init=True,  # PID 1 forwards `docker stop`'s SIGTERM to the server
        )
        try:
            self._start_container()
            watched = Watched(f"the {self.title} container", self._exit_reason, lambda _: self._log_tail())
            await_ready(self.server.answering, watched, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop and remove the container, keeping its output in ``workdir``."""
        if self.container is None:
            return
        remove_container(self.container, self.workdir / f"{self.name}.container.log")
        self.container = None

    def processes(self) -> list[psutil.Process]:
        """The server's processes in the container as this machine sees them, without Docker's init (its
        PID 1): none when the engine runs elsewhere (Docker Desktop's VM, say). Cost is measured by
        ``ContainerUsage`` either way."""
        if self.container is None:
            return []
        try:
            listed = self.container.top()
        except DockerException:
            return []
        column = listed["Titles"].index("PID")
        found = [_local(int(row[column]), row[-1]) for row in listed["Processes"]
                 if not row[-1].startswith(DOCKER_INIT)]  # fmt: skip
        return [proc for proc in found if proc is not None]

    def pids(self) -> list[int]:
        return []

    def versions(self) -> dict[str, str]:
        return versions_in(type(self.server), self.container)

    def diagnose(self, problem: str, lost: bool = False) -> ServerError:
        gone = self._exit_reason()
        if gone:
            tail = self._log_tail()
            return ServerError(f"{problem}; the {self.title} container {gone}; its output:\n{tail}")
        where = self.container.short_id if self.container is not None else "(not started)"
        return ServerError(f"{problem}; the {self.title} container {where} is still running")

    def __enter__(self) -> ContainerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_container(self) -> None:
        try:
            self.container.start()
        except DockerException as err:
            reason = getattr(err, "explanation", None) or str(err)
            raise ServeoffError(f"Docker could not start the {self.title} container: {reason}") from None

    def _volumes(self) -> dict[str, dict[str, str]]:
        volumes = {str(self.workdir.resolve()): {"bind": str(self.workdir.resolve()), "mode": "rw"}}
        for path in [m.root.resolve() for m in self.models] + [p.resolve() for p in self.mounts]:
            volumes[str(path)] = {"bind": str(path), "mode": "ro"}
        return volumes

    def _exit_reason(self) -> str | None:
        if self.container is None:
            return "was never started"
        try:
            self.container.reload()
        except NotFound:
            return "is gone"
        if self.container.status in ("created", "running"):
            return None
        return f"exited with code {self.container.attrs['State'].get('ExitCode')}"

    def _log_tail(self) -> str:
        return container_output(self.container) or "(no output: the container is gone)"


def _local(pid: int, command: str) -> psutil.Process | None:
    """Process ``pid`` of this machine if it runs ``command`` (so it is the engine's process, not another
    machine's PID that happens to exist here)."""
    try:
        proc = psutil.Process(pid)
        return proc if " ".join(proc.cmdline()) == command else None
    except psutil.Error:
        return None


def container_output(container: Any, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of ``container``'s output ("" when the engine cannot give them)."""
    try:
        return container.logs(tail=lines).decode("utf-8", errors="replace").rstrip()
    except DockerException:
        return ""


def versions_in(server: type[Server], container: Any) -> dict[str, str]:
    """``server``'s versions read inside its running ``container``, the image it was started from (name and
    ID) and that image's architecture."""

    def run(argv: list[str]) -> str:
        return container.exec_run(argv).output.decode("utf-8", errors="replace")

    image = container.attrs["Config"]["Image"]  # the name (and so the tag) it was created from
    return server.container_versions(run) | {
        "image": f"{image} ({container.image.id[:19]})",
        "architecture": container.image.attrs.get("Architecture", "unknown"),
    }


def remove_container(container: Any, log: Path) -> None:
    """Stop and remove ``container``, keeping its output in ``log``; nothing to do when it is gone."""
    try:
        container.stop(timeout=STOP_GRACE_S)
        log.write_bytes(container.logs())
        container.remove(force=True)
    except NotFound:
        pass
    except DockerException as err:
        raise ServeoffError(f"could not remove container {container.short_id}: {err}") from None
