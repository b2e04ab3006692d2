"""The battery: each server, each model, launched fresh (the cold start), natively or in a container,
probed, and stopped (by PID, or by removing its container)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.probes.badinput import bad_input
from serveoff.loadtest.probes.coldstart import cold_start
from serveoff.loadtest.probes.context import Probed, ProbeSettings
from serveoff.loadtest.probes.failure import process_failure
from serveoff.loadtest.probes.overload import overload
from serveoff.loadtest.probes.schema import ProbeResult, ProbesFile
from serveoff.loadtest.probes.servers import probe_class
from serveoff.loadtest.probes.soak import soak
from serveoff.loadtest.probes.update import model_update
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.container import ContainerOptions
from serveoff.serving.fleet import launch
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import ServerConfig

# After the cold start, in this order: the process failure last, as it may leave the server dead.
AFTER_START: tuple[Callable[[Probed], ProbeResult], ...] = (bad_input, overload, model_update, soak,
                                                          process_failure)  # fmt: skip
UNSEEN = ("the probes kill and measure the server's processes, but this machine cannot see them (the Docker "
          "engine runs elsewhere): run serveoff probe --docker on the engine's machine")


@dataclass(frozen=True)
class Battery:
    """What one `serveoff probe` runs: ``servers`` x ``layouts`` under one fair ``config``."""

    servers: list[str]
    layouts: list[ArtifactLayout]
    config: ServerConfig
    settings: ProbeSettings
    run_dir: Path
    containers: ContainerOptions | None = None  # None: natively

    @property
    def launcher(self) -> str:
        return "native" if self.containers is None else "docker"


def run_battery(battery: Battery, say: Callable[[str], None]) -> ProbesFile:
    """Every probe on every server and model; ``probes.json`` is rewritten after each probe."""
    doc = ProbesFile({"config": str(battery.config.to_json()), "launcher": battery.launcher,
                      **battery.settings.to_json()})  # fmt: skip
    engine = LoadEngine()
    try:
        for name in battery.servers:
            for layout in battery.layouts:
                _probe_server(name, layout, battery, engine, doc, say)
    finally:
        engine.close()
    return doc


def _probe_server(name: str, layout: ArtifactLayout, battery: Battery, engine: LoadEngine, doc: ProbesFile,
                  say: Callable[[str], None]) -> None:  # fmt: skip
    cls = probe_class(name)
    workdir = battery.run_dir / "servers" / f"{name}-{layout.name}"
    base = free_port_base(cls.port_count)
    server = launch(cls, [layout], battery.config, workdir, base, battery.containers)
    protocol = "v1" if "v1" in cls.protocols else "rest"
    launched = time.monotonic()
    try:
        try:
            server.start(timeout=battery.settings.start_timeout_s)
            if battery.containers is not None and not server.processes():
                raise ServeoffError(UNSEEN)
        except ServeoffError as err:  # recorded; the other servers are still probed
            doc.results.append(ProbeResult("cold_start", name, layout.name, name, False, error=str(err)))
            doc.write(battery.run_dir)
            say(f"{name} {layout.name} cold_start: error: {err}")
            return
        probed = Probed(server, layout, protocol, battery.settings, engine)
        chosen = [probe for probe in AFTER_START if probe.__name__ in battery.settings.probes]
        for probe in (partial(cold_start, launched_at=launched), *chosen):
            result = _run_one(probe, probed)
            doc.results.append(result)
            doc.write(battery.run_dir)
            say(f"{name} {layout.name} {result.probe}: {_short(result)}")
    finally:
        server.stop()


def _run_one(probe: Callable[[Probed], ProbeResult], probed: Probed) -> ProbeResult:
    """The probe's result; one that failed is recorded with its error, and the battery goes on."""
    try:
        return probe(probed)
    except ServeoffError as err:
        result = probed.result(getattr(probe, "func", probe).__name__)
        result.error = str(err)
        return result


def _short(result: ProbeResult) -> str:
    if result.error:
        return f"error: {result.error}"
    shown = list(result.figures.items())[:4]
    return ", ".join(f"{k} {v}" for k, v in shown)
