"""``digits-mlp``: a small MLP on scikit-learn's 8x8 digits, so that server overhead dominates."""

from __future__ import annotations

from itertools import pairwise

import keras
import torch
from torch import nn

from serveoff.models import datasets
from serveoff.models.spec import Dataset, InputSpec, TrainingPlan


class DigitsMLPTorch(nn.Module):
    """Flatten NHWC ``[n, 8, 8, 1]`` and apply three dense layers."""

    def __init__(self, hidden: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        widths = (64, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.out(x)


class DigitsMLP:
    """The ``digits-mlp`` architecture."""

    name = "digits-mlp"
    description = "MLP on scikit-learn's bundled 8x8 digits (tiny: server overhead dominates)"
    input = InputSpec("input", "float32", (8, 8, 1))
    num_classes = 10
    training = TrainingPlan(steps=400, batch_size=64, learning_rate=3e-3)
    hidden = (128, 64)

    def config(self) -> dict:
        return {"hidden": list(self.hidden)}

    def dataset(self, seed: int) -> Dataset:
        return datasets.digits(seed)

    def torch_module(self) -> nn.Module:
        return DigitsMLPTorch(self.hidden, self.num_classes)

    def keras_model(self) -> keras.Model:
        inputs = keras.Input(self.input.shape, name=self.input.name, dtype=self.input.dtype)
        x = keras.layers.Flatten(name="flatten")(inputs)
        for i, width in enumerate(self.hidden):
            x = keras.layers.Dense(width, activation="relu", name=f"hidden{i}")(x)
        logits = keras.layers.Dense(self.num_classes, name="out")(x)
        return keras.Model(inputs, logits, name="digits_mlp")

    def port_weights(self, module: nn.Module, model: keras.Model) -> None:
        for i, layer in enumerate(module.hidden):
            model.get_layer(f"hidden{i}").set_weights(dense_weights(layer))
        model.get_layer("out").set_weights(dense_weights(module.out))


def dense_weights(layer: nn.Linear) -> list:
    """A torch Linear as Keras Dense weights: the kernel is transposed ([out, in] -> [in, out])."""
    return [layer.weight.detach().numpy().T, layer.bias.detach().numpy()]
