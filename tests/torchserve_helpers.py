"""Helpers for the TorchServe tests: new servers on free ports, and finding what a server left running."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.spec import InputSpec
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import ServerConfig, server_config
from serveoff.serving.torchserve.package import make_mar, model_store
from serveoff.serving.torchserve.server import TorchServe

START_TIMEOUT_S = 120.0  # generous: the machine has 2 cores and other work may run


def new_server(models: list[ArtifactLayout], workdir: Path, config: ServerConfig | None = None) -> TorchServe:
    """A TorchServe on free ports with the matched preset, not started."""
    port_base = free_port_base(TorchServe.port_count)
    return TorchServe(models, config or server_config("matched"), workdir, port_base)


def broken_model(root: Path) -> ArtifactLayout:
    """A model whose .mar holds garbage instead of TorchScript, so its workers die loading it."""
    layout = ArtifactLayout(root / "broken", "broken")
    garbage = root / "garbage.pt"
    garbage.write_bytes(b"this is not a TorchScript file" * 100)
    make_mar(layout.name, garbage, InputSpec("input", "float32", (8, 8, 1)), model_store(layout))
    return layout


def java_of(server: TorchServe) -> psutil.Process:
    """The server's Java frontend."""
    (java,) = [p for p in server.processes() if p.name() == "java"]
    return java


def environment_matches(config_path: Path) -> list[psutil.Process]:
    """Live processes started with this server's config (the launcher, Java and every worker inherit it)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.environ().get("TS_CONFIG_FILE") == str(config_path)
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def left_running(recorded: list[psutil.Process], config_path: Path, wait: float = 5.0) -> list[str]:
    """Descriptions of the server's processes still alive after it was stopped (none, hopefully)."""
    deadline = time.monotonic() + wait
    while True:
        alive = {p.pid: p for p in recorded if _alive(p)} | {
            p.pid: p for p in environment_matches(config_path)
        }
        if not alive or time.monotonic() > deadline:
            return [f"{pid} {_cmdline(p)}" for pid, p in alive.items()]
        time.sleep(0.2)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "?"
