"""``tf:inprocess``: the SavedModel that TF Serving serves, run by TensorFlow in this process."""

from __future__ import annotations

from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.runners import SavedModelRunner
from serveoff.serving.resources import ServerConfig
from serveoff.serving.runtimes import BuildInputs, Runner


def set_tf_threads(config: ServerConfig) -> None:
    """Apply the config's TF thread counts; they can only be set before TF runs its first op."""
    import tensorflow as tf

    wanted = {
        "intra-op": (config.threads, tf.config.threading.get_intra_op_parallelism_threads,
                     tf.config.threading.set_intra_op_parallelism_threads),
        "inter-op": (config.inter_op_threads, tf.config.threading.get_inter_op_parallelism_threads,
                     tf.config.threading.set_inter_op_parallelism_threads),
    }  # fmt: skip
    for what, (value, get, set_) in wanted.items():
        if value is None or get() == value:
            continue
        try:
            set_(value)
        except RuntimeError:
            raise ServeoffError(
                f"TensorFlow's {what} threads are already fixed at {get() or 'default'} in this process; "
                f"run the TensorFlow baselines in a fresh process to use {value}"
            ) from None


class SavedModelRuntime:
    """TensorFlow running the build's SavedModel signature (what TF Serving runs)."""

    target = "tf:inprocess"
    title = "SavedModel"
    compiles = False

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        return None  # the build's own SavedModel

    def export(self, inputs: BuildInputs) -> None:
        return None

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        set_tf_threads(config)
        return SavedModelRunner(layout.savedmodel)


RUNTIME = SavedModelRuntime()
