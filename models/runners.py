"""In-process runners: load an artifact and run a batch in this process, the physical limit of serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import torch

from serveoff.errors import ServeoffError
from serveoff.models.export import SIGNATURE


class TorchScriptRunner:
    """Runs a TorchScript file on numpy batches."""

    def __init__(self, path: Path) -> None:
        try:
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ServeoffError(
                f"cannot load TorchScript {path}: {first}; save it with torch.jit.save"
            ) from None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for one batch, as float32 numpy."""
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


@dataclass(frozen=True)
class TensorSignature:
    """Name, dtype and shape (``None`` for unknown dimensions) of one signature tensor."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


class SavedModelRunner:
    """Runs the ``serving_default`` signature of a SavedModel with one input and one output."""

    def __init__(self, path: Path) -> None:
        try:
            loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError, tf.errors.OpError) as err:
            first = str(err).strip().splitlines()[0]
            raise ServeoffError(f"cannot load SavedModel {path}: {first}") from None
        if SIGNATURE not in loaded.signatures:
            raise ServeoffError(
                f"SavedModel {path} has no {SIGNATURE!r} signature; "
                "export one (TF Serving calls it by default)"
            )
        self._loaded = loaded  # keeps the signature's variables alive
        self.fn = loaded.signatures[SIGNATURE]
        inputs = self.fn.structured_input_signature[1]
        outputs = self.fn.structured_outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ServeoffError(
                f"SavedModel {path}: {SIGNATURE!r} must have one input and one output, "
                f"has {len(inputs)} and {len(outputs)}"
            )
        (self.input,) = (_signature(name, spec) for name, spec in inputs.items())
        (self.output,) = (_signature(name, spec) for name, spec in outputs.items())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for one batch, as numpy."""
        result = self.fn(**{self.input.name: tf.constant(batch)})
        return result[self.output.name].numpy()


def _signature(name: str, spec: tf.TensorSpec) -> TensorSignature:
    return TensorSignature(name, spec.dtype.name, tuple(spec.shape.as_list()))
