"""``torch:compiled``: the PyTorch model under ``torch.compile`` with the inductor backend, on the CPU.

TorchScript modules cannot be compiled, so the build exports the trained eager module with
``torch.export`` (a dynamic batch dimension) to ``torch-export/model.pt2``; the loader compiles that
program's module. Compilation happens on the first call of each batch shape, which the bench measures
apart from serving. Your own model arrives as TorchScript only, so it has no such runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.resources import ServerConfig
from serveoff.serving.runtimes import BuildInputs, Runner, Unavailable, first_line
from serveoff.serving.runtimes.torchscript import set_torch_threads


class CompiledRunner:
    """An exported program's module compiled by inductor."""

    def __init__(self, path: Path) -> None:
        import torch

        try:
            module = torch.export.load(str(path)).module()
        except (RuntimeError, ValueError, OSError) as err:
            raise ServeoffError(
                f"cannot load the exported program {path}: {first_line(err)}; rebuild with `serveoff build`"
            ) from None
        self.module = torch.compile(module, backend="inductor")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for one batch, as numpy; the first batch of each shape compiles."""
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


class CompiledRuntime:
    """torch.compile (inductor) over the build's exported program."""

    target = "torch:compiled"
    title = "torch.compile (inductor)"
    compiles = True

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        return layout.root / "torch-export" / "model.pt2"

    def export(self, inputs: BuildInputs) -> None:
        import torch

        if inputs.module is None:
            raise Unavailable("only a PyTorch module can be torch.compiled, and this build has TorchScript")
        path = self.artifact(inputs.layout)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        example = torch.from_numpy(np.ascontiguousarray(inputs.example))
        batch = torch.export.Dim("batch", min=1, max=1024)
        with torch.no_grad():
            program = torch.export.export(inputs.module.eval(), (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        set_torch_threads(config)
        path = self.artifact(layout)
        assert path is not None
        return CompiledRunner(path)


RUNTIME = CompiledRuntime()
