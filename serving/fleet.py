"""`serveoff up` and `serveoff down`: start servers by hand, record them, and stop exactly those."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psutil
from docker.errors import DockerException, NotFound

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import Endpoints, Server
from serveoff.serving.container import (
    ContainerOptions,
    ContainerServer,
    ContainerUsage,
    container_output,
    docker_client,
    remove_container,
)
from serveoff.serving.process import read_tail, session_members, terminate
from serveoff.serving.resources import ServerConfig
from serveoff.serving.targets import server_class
from serveoff.serving.usage import ProcessUsage, Usage
from serveoff.signals import deferred

STATE_SCHEMA = "serveoff.servers/4"
# Version 3 kept endpoints and the config as plain objects too, but wrote session 0 and started_at 0.0 for a
# server in a container; version 4 writes null there. Both read.
READ_SCHEMAS = ("serveoff.servers/3", STATE_SCHEMA)
STALE_STATE = "delete it if no server of serveoff runs"
NATIVE = "native"


@dataclass(frozen=True)
class Record:
    """A server that `serveoff up` (or `run`, or compose) left running: enough to use it, measure its cost
    and stop exactly it later."""

    server: str
    endpoints: Endpoints
    models: dict[str, str]  # model name -> its artifact directory
    config: ServerConfig
    versions: dict[str, str]
    log: str
    launcher: str = NATIVE  # "native", "docker" (serveoff started the container) or "compose" (compose did)
    # native: the PID of the process serveoff started (its session holds every process of the server) and
    # its create time, so a reused PID is never mistaken for it
    session: int | None = None
    started_at: float | None = None
    container: str | None = None  # the container's ID, when in one
    memory_bytes: int | None = None  # the container's memory limit

    @property
    def layouts(self) -> dict[str, ArtifactLayout]:
        """The built artifacts of the models it serves."""
        return {name: ArtifactLayout(Path(root), name) for name, root in self.models.items()}

    def to_json(self) -> dict:
        """The record as the servers file keeps it."""
        return vars(self) | {"endpoints": self.endpoints.to_json(), "config": self.config.to_json()}

    @classmethod
    def from_json(cls, entry: dict) -> Record:
        """A record ``to_json`` wrote (or version 3 did); ``TypeError`` or ``ValueError`` when malformed."""
        if not isinstance(entry, dict) or not isinstance(entry.get("endpoints"), dict):
            raise TypeError("a server entry and its endpoints must be objects")
        if not isinstance(entry.get("config"), dict):
            raise TypeError("a server's config must be an object")
        fields = entry | {"endpoints": Endpoints(**entry["endpoints"]),
                          "config": ServerConfig.from_json(entry["config"])}  # fmt: skip
        if fields.get("container") is not None:  # version 3's stand-ins for "no process of ours"
            fields |= {"session": None, "started_at": None}
        return _checked(cls(**fields))


def start_servers(
    names: list[str],
    models: list[ArtifactLayout],
    config: ServerConfig,
    workdir: Path,
    state: Path,
    port_bases: dict[str, int] | None = None,
    *,
    docker: ContainerOptions | None = None,
) -> list[Record]:
    """Start each server (on its default ports unless given) and record it in ``state``: natively, or
    from its Docker image with ``docker``.

    When one fails to start, those already started are stopped and nothing is recorded.
    """
    check_none_running(state)
    started: list[Server | ContainerServer] = []
    try:
        for name in names:
            cls = server_class(name)
            port_base = (port_bases or {}).get(name, cls.default_port_base)
            started.append(launch(cls, models, config, workdir / name, port_base, docker))
            started[-1].start()  # stopped below too when its start fails or is interrupted
    except BaseException:
        with deferred():
            for server in started:
                server.stop()
        raise
    records = [record(server) for server in started]
    write_state(state, records)
    return records


def check_none_running(state: Path) -> None:
    """One clear line when ``state`` is unreadable or records servers that may still run."""
    if any(running(rec) for rec in read_state(state)):
        raise ServeoffError(f"servers recorded in {state} may still run; stop them with `serveoff down`")


def launch(
    cls: type[Server],
    models: list[ArtifactLayout],
    config: ServerConfig,
    workdir: Path,
    port_base: int,
    docker: ContainerOptions | None,
) -> Server | ContainerServer:
    """A server (not started yet): native, or from its Docker image with ``docker``."""
    server = cls(models, config, workdir, port_base)
    return server if docker is None else ContainerServer(server, docker)


def record(server: Server | ContainerServer) -> Record:
    """The record of a running server."""
    shared = {
        "server": server.name,
        "endpoints": server.endpoints,
        "models": {m.name: str(m.root.resolve()) for m in server.models},
        "config": server.config,
        "versions": server.versions(),
        "log": str(server.workdir),
    }
    if isinstance(server, ContainerServer):
        return Record(**shared, launcher=server.launcher, container=server.container.id,
                      memory_bytes=server.memory)  # fmt: skip
    root = server.pids()[0]
    return Record(**shared, session=root, started_at=psutil.Process(root).create_time())


def write_state(path: Path, records: list[Record]) -> None:
    """Write the state file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    doc = {"schema": STATE_SCHEMA, "servers": [r.to_json() for r in records]}
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def read_state(path: Path) -> list[Record]:
    """The recorded servers; a clear error when the file is not serveoff's."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise ServeoffError(f"cannot read {path}: {err}; {STALE_STATE}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in READ_SCHEMAS:
        raise ServeoffError(f"{path} is not a serveoff servers file (schema {schema!r}); {STALE_STATE}")
    try:
        return [Record.from_json(entry) for entry in data["servers"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ServeoffError(f"{path} is malformed ({type(err).__name__}: {err}); {STALE_STATE}") from None


def _checked(rec: Record) -> Record:
    """A record whose fields have the types later steps use (a hand-edited file may say anything)."""
    native = rec.container is None
    typed = {"server": str, "models": dict, "versions": dict, "log": str, "launcher": str,
             "session": int if native else type(None),
             "started_at": (int, float) if native else type(None)}  # fmt: skip
    wrong = [name for name, kind in typed.items() if not isinstance(getattr(rec, name), kind)]
    if wrong:
        raise ValueError(f"bad {', '.join(wrong)}")
    return rec


def running(rec: Record) -> bool:
    """Whether a recorded server still runs."""
    return usage_of(rec).running()


def usage_of(rec: Record) -> Usage:
    """Where the cost of a recorded server is read: its processes, or its container's stats."""
    if rec.container is None:
        return ProcessUsage(lambda: processes_of(rec))
    try:
        return ContainerUsage(docker_client().containers.get(rec.container))
    except NotFound:
        return ProcessUsage(list)  # the container is gone: nothing runs


def log_tail(rec: Record, lines: int = 20) -> str:
    """The last ``lines`` lines of a recorded server's output: its log file natively, else its
    container's output ("" when there is none to read)."""
    if rec.container is None:
        return read_tail(server_class(rec.server).log_file(Path(rec.log)), lines)
    try:
        container = docker_client().containers.get(rec.container)
    except (DockerException, ServeoffError):
        return ""
    return container_output(container, lines)


def usage_source(rec: Record) -> str:
    """How the cost of a recorded server is measured, for the manifest."""
    return (ProcessUsage if rec.container is None else ContainerUsage).source


def processes_of(rec: Record) -> list[psutil.Process]:
    """The live processes of a recorded native server (none when its session is gone or the PID was
    reused)."""
    if rec.session is None:
        return []  # not a process of ours: a container
    try:
        root = psutil.Process(rec.session)
        if abs(root.create_time() - rec.started_at) > 1.0:
            return []
    except psutil.NoSuchProcess:
        pass  # the started process exited; its children may live on in its session
    return session_members(rec.session)


def stop_servers(state: Path, grace: float = 15.0) -> list[str]:
    """Stop every server recorded in ``state`` and remove the file; returns what was stopped.

    A stop signal waits until all are stopped."""
    stopped = []
    with deferred():
        for rec in read_state(state):
            if rec.launcher == "docker":
                stopped += stop_container(rec)
                continue
            procs = processes_of(rec)
            if procs:
                terminate(procs, grace)
                stopped.append(f"{rec.server} ({len(procs)} processes)")
        state.unlink(missing_ok=True)
    return stopped


def stop_container(rec: Record) -> list[str]:
    """Stop and remove the container serveoff started for ``rec`` (kept: its output, in its log dir)."""
    try:
        container = docker_client().containers.get(rec.container)
    except NotFound:
        return []
    remove_container(container, Path(rec.log, f"{rec.server}.container.log"))
    return [f"{rec.server} (container {container.short_id})"]
