"""The in-process baselines: the same trained weights run in this process, the physical limit of serving.

Each runtime (``torch:inprocess``, ``torch:compiled``, ``tf:xla``, ...) lives in ``serving/runtimes/``.
"""

from __future__ import annotations

import numpy as np

from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving import runtimes
from serveoff.serving.base import Client
from serveoff.serving.resources import ServerConfig


class InProcessClient(Client):
    """A ``Client`` that calls an in-process runner instead of a server."""

    def __init__(self, runner: runtimes.Runner) -> None:
        self.runner = runner

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.runner.predict(batch)


def inprocess_client(runtime: str, layout: ArtifactLayout, config: ServerConfig) -> InProcessClient:
    """A baseline client for ``runtime`` (a runtime's target name, e.g. ``torch:compiled``; ``torch`` and
    ``tf`` name the frameworks' plain runtimes) using the config's thread counts."""
    name = runtime if ":" in runtime else f"{runtime}:inprocess"
    return InProcessClient(runtimes.get(name).load(layout, config))
