"""``tf:xla``: the same SavedModel signature, compiled by XLA (``tf.function(jit_compile=True)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.runners import SavedModelRunner
from serveoff.serving.resources import ServerConfig
from serveoff.serving.runtimes import BuildInputs, Runner
from serveoff.serving.runtimes.savedmodel import set_tf_threads


class XlaRunner:
    """The SavedModel's signature wrapped in an XLA-compiled function (compiled per batch shape)."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self.model = SavedModelRunner(path)
        fn, name = self.model.fn, self.model.input.name
        self.compiled = tf.function(lambda x: fn(**{name: x}), jit_compile=True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for one batch, as numpy; the first batch of each shape compiles."""
        import tensorflow as tf

        return self.compiled(tf.constant(batch))[self.model.output.name].numpy()


class XlaRuntime:
    """TensorFlow with XLA's just-in-time compiler over the build's SavedModel: no artifact of its own."""

    target = "tf:xla"
    title = "XLA (jit_compile)"
    compiles = True

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        return None

    def export(self, inputs: BuildInputs) -> None:
        return None

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        set_tf_threads(config)
        return XlaRunner(layout.savedmodel)


RUNTIME = XlaRuntime()
