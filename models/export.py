"""Write the two framework artifacts: TorchScript from the PyTorch module, a SavedModel from Keras."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import torch

from serveoff.models.spec import InputSpec

SIGNATURE = "serving_default"
OUTPUT_NAME = "logits"


def export_torchscript(module: torch.nn.Module, example: np.ndarray, path: Path) -> Path:
    """Trace ``module`` on ``example`` (a small wire-format batch) and save it as TorchScript."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        traced = torch.jit.trace(module.eval(), torch.from_numpy(example), check_trace=False)
    torch.jit.save(traced, str(path))
    return path


def export_savedmodel(model: keras.Model, input_spec: InputSpec, path: Path) -> Path:
    """Export ``model`` as a SavedModel whose ``serving_default`` signature maps the input to logits."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=lambda x: {OUTPUT_NAME: model(x, training=False)},
        input_signature=[tf.TensorSpec(input_spec.batch_shape(), input_spec.dtype, name=input_spec.name)],
    )
    archive.write_out(str(path), verbose=False)
    return path
