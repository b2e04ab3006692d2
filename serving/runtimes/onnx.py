"""``onnx:inprocess``: the PyTorch model exported to ONNX (``onnx/model.onnx``), run by ONNX Runtime.

A zoo build exports the trained eager module with the dynamo exporter; your own model's TorchScript
goes through the TorchScript exporter, which not every model passes (then the build says why and
goes on without this runtime).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.resources import ServerConfig
from serveoff.serving.runtimes import BuildInputs, Runner, Unavailable, first_line

INPUT, OUTPUT = "input", "logits"


@contextlib.contextmanager
def exporter_quiet() -> Iterator[None]:
    """The exporter's warnings (e.g. that torchvision's ops are not registered) stay out of the terminal:
    torch's loggers print to stderr themselves."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class OnnxRunner:
    """An ONNX Runtime session on the CPU with the config's thread counts."""

    def __init__(self, path: Path, config: ServerConfig) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads or 0  # 0: ONNX Runtime's default
        options.inter_op_num_threads = config.inter_op_threads or 0
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own exception types for a bad model file
            raise ServeoffError(
                f"ONNX Runtime cannot load {path}: {first_line(err)}; rebuild with `serveoff build`"
            ) from None
        self.input = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for one batch, as numpy."""
        return self.session.run(None, {self.input: np.ascontiguousarray(batch)})[0]


class OnnxRuntime:
    """ONNX Runtime over the build's ONNX export of the PyTorch model."""

    target = "onnx:inprocess"
    title = "ONNX Runtime"
    compiles = False

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        return layout.root / "onnx" / "model.onnx"

    def export(self, inputs: BuildInputs) -> None:
        import torch

        path = self.artifact(inputs.layout)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        example = (torch.from_numpy(np.ascontiguousarray(inputs.example)),)
        names = {"input_names": [INPUT], "output_names": [OUTPUT], "verbose": False}
        if inputs.module is not None:
            batch = torch.export.Dim("batch", min=1, max=1024)
            with torch.no_grad(), exporter_quiet():
                torch.onnx.export(inputs.module.eval(), example, str(path), dynamo=True, external_data=False,
                                  dynamic_shapes=({0: batch},), **names)  # fmt: skip
            return
        module = torch.jit.load(str(inputs.layout.torchscript), map_location="cpu").eval()
        try:
            with exporter_quiet():
                axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
                torch.onnx.export(module, example, str(path), dynamo=False, dynamic_axes=axes, **names)
        except Exception as err:  # the TorchScript exporter raises many types for an op it cannot map
            path.unlink(missing_ok=True)
            reason = f"the TorchScript-to-ONNX exporter refused this model: {first_line(err)}"
            raise Unavailable(reason) from None

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        path = self.artifact(layout)
        assert path is not None
        return OnnxRunner(path, config)


RUNTIME = OnnxRuntime()
