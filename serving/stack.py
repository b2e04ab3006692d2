"""The docker compose stack: every server's launch files in one directory, and the running stack read back.

``serveoff prepare`` (compose's ``build`` service) writes, for each server, its configuration and a
``launch.sh`` that its container runs, plus ``stack.json``. ``serveoff bench --stack`` (compose's
``bench`` service) reads ``stack.json``, reaches each server by its compose service name (the server's
name) and finds its container through the Docker socket, for versions, limits and cost.
"""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

from docker import DockerClient
from docker.models.containers import Container

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.container import (
    LABEL,
    check_architectures,
    docker_client,
    engine_architecture,
    versions_in,
)
from serveoff.serving.fleet import Record
from serveoff.serving.resources import ServerConfig, available_cpus, parse_cpus
from serveoff.serving.targets import server_class

STACK_SCHEMA = "serveoff.stack/1"
STACK_FILE = "stack.json"
LAUNCH_FILE = "launch.sh"
COMPOSE = "compose"


def write_stack(
    models: list[ArtifactLayout], config: ServerConfig, stack: Path, servers: list[str]
) -> Path:
    """Write each of ``servers``' configuration and ``launch.sh`` under ``stack/<server>/``; returns
    stack.json.

    Paths in them are this container's: compose mounts the stack and artifacts volumes at the same
    places in every service.
    """
    entries = {}
    for name in servers:
        cls = server_class(name)
        workdir = (stack / name).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "logs").mkdir(exist_ok=True)
        (workdir / "logs").chmod(0o777)  # the server's image user writes its logs here
        launch = cls(models, config, workdir, cls.default_port_base).write_launch()
        exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(launch.env.items()))
        script = f"#!/bin/sh\n# written by serveoff prepare\n{exports}exec {shlex.join(launch.argv)}\n"
        (workdir / LAUNCH_FILE).write_text(script)
        entries[name] = {"port_base": cls.default_port_base, "launch": str(workdir / LAUNCH_FILE)}
    doc = {
        "schema": STACK_SCHEMA,
        "config": config.to_json(),
        "models": {m.name: str(m.root.resolve()) for m in models},
        "servers": entries,
    }
    path = stack / STACK_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def loadgen_overlap(text: str, config: ServerConfig) -> list[int]:
    """The load generator's CPU set (compose's ``SERVEOFF_LOADGEN_CPUS``) checked against this machine's
    CPUs, before anything is built; returns the CPUs it shares with the servers (none, ideally)."""
    try:
        loadgen = parse_cpus(text)
    except ServeoffError as err:
        raise ServeoffError(f"the load generator's {err} (SERVEOFF_LOADGEN_CPUS)") from None
    servers = config.cpus if config.cpus is not None else available_cpus()
    return sorted(set(loadgen) & set(servers))


def read_stack(stack: Path) -> dict:
    """``stack.json``; one clear line when it is missing or not serveoff's."""
    path = stack / STACK_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ServeoffError(f"{path} is missing; write it with `serveoff prepare --stack {stack}`") from None
    except (OSError, ValueError) as err:
        raise ServeoffError(f"cannot read {path}: {err}; write it again with `serveoff prepare`") from None
    if doc.get("schema") != STACK_SCHEMA:
        raise ServeoffError(f"{path} is not a serveoff stack file (schema {doc.get('schema')!r})")
    return doc


def attach(stack: Path) -> list[Record]:
    """The records of the stack's running servers, each found by its service name.

    An error when a server's container cannot be found, when the containers' CPU sets or memory
    limits differ, or when an image is not built for the engine's architecture (it would run emulated):
    the comparison would not be fair.
    """
    doc = read_stack(stack)
    client = docker_client()
    records = []
    limits: dict[str, tuple] = {}
    for name, entry in doc["servers"].items():
        cls = server_class(name)
        container = _container_of(client, name)
        host = container.attrs["HostConfig"]
        records.append(
            Record(
                server=name,
                endpoints=cls.endpoints_at(name, entry["port_base"]),
                models=doc["models"],
                config=ServerConfig.from_json(doc["config"]),
                versions=versions_in(cls, container),
                log=f"docker logs {container.name}",
                launcher=COMPOSE,
                container=container.id,
                memory_bytes=host.get("Memory") or None,
            )
        )  # fmt: skip
        limits[name] = (host.get("CpusetCpus") or "all", host.get("Memory") or "none")
    if len(set(limits.values())) > 1:
        described = "; ".join(f"{name}: CPUs {cpus}, memory {mem}" for name, (cpus, mem) in limits.items())
        raise ServeoffError(
            f"the servers' containers have different limits ({described}); give them the same "
            "SERVEOFF_SERVER_CPUS and SERVEOFF_SERVER_MEMORY"
        )
    check_architectures(
        {rec.server: rec.versions["architecture"] for rec in records}, engine_architecture(client)
    )
    return records


def _container_of(client: DockerClient, service: str) -> Container:
    """The container answering at ``service``'s address that carries serveoff's label for it."""
    try:
        address = socket.gethostbyname(service)
    except OSError:
        raise ServeoffError(
            f"service {service!r} has no address here; run this inside the compose stack (docker compose up)"
        ) from None
    for container in client.containers.list(filters={"label": f"{LABEL}={service}"}):
        networks = container.attrs["NetworkSettings"]["Networks"].values()
        if any(net.get("IPAddress") == address for net in networks):
            return container
    raise ServeoffError(
        f"no running container labelled {LABEL}={service} has address {address}; is the {service} "
        "service of this stack up?"
    )
