"""The in-process baselines: the same artifacts run in this process, the physical limit of serving."""

from __future__ import annotations

import numpy as np

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.runners import SavedModelRunner, TorchScriptRunner
from serveoff.serving.base import Client
from serveoff.serving.resources import ServerConfig


class InProcessClient(Client):
    """A ``Client`` that calls an in-process runner instead of a server."""

    def __init__(self, runner: TorchScriptRunner | SavedModelRunner) -> None:
        self.runner = runner

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.runner.predict(batch)


def inprocess_client(framework: str, layout: ArtifactLayout, config: ServerConfig) -> InProcessClient:
    """A baseline client for ``framework`` ("torch" or "tf") using the config's thread counts."""
    if framework == "torch":
        import torch

        if config.threads:
            torch.set_num_threads(config.threads)
        return InProcessClient(TorchScriptRunner(layout.torchscript))
    if framework == "tf":
        set_tf_threads(config)
        return InProcessClient(SavedModelRunner(layout.savedmodel))
    raise ServeoffError(f"unknown in-process framework {framework!r}; choose torch or tf")


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
                f"run the tf:inprocess baseline in a fresh process to use {value}"
            ) from None
