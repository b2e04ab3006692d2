"""``torch:inprocess``: the TorchScript file that TorchServe serves, run by PyTorch in this process."""

from __future__ import annotations

from pathlib import Path

from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.runners import TorchScriptRunner
from serveoff.serving.resources import ServerConfig
from serveoff.serving.runtimes import BuildInputs, Runner


def set_torch_threads(config: ServerConfig) -> None:
    """Apply the config's intra-op thread count to PyTorch (process-wide)."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)


class TorchScriptRuntime:
    """PyTorch running the build's TorchScript file (what TorchServe's handler runs)."""

    target = "torch:inprocess"
    title = "TorchScript"
    compiles = False

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        return None  # the build's own TorchScript file

    def export(self, inputs: BuildInputs) -> None:
        return None

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        set_torch_threads(config)
        return TorchScriptRunner(layout.torchscript)


RUNTIME = TorchScriptRuntime()
