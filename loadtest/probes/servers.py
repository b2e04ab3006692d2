"""The server-specific side of the probes: the ``probe_module`` a server class names, if any.

Such a module has ``ProbedServer`` (the server as the probes launch it), ``roll_out(server, layout)``
(a new version, returned), ``serving_version(server, layout)`` (which version answers now) and, where a
server keeps several versions' processes, ``serving_pids(server, layout)`` (the processes of the one that
answers). A server without one is probed as it is, and its rollout is recorded as not supported.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from serveoff.serving.base import Server
from serveoff.serving.targets import server_class


def probe_module(name: str) -> ModuleType | None:
    """Server ``name``'s probe module, or ``None``."""
    module = server_class(name).probe_module
    return import_module(module) if module else None


def probe_class(name: str) -> type[Server]:
    """The class the probes launch server ``name`` with."""
    module = probe_module(name)
    return module.ProbedServer if module is not None else server_class(name)
