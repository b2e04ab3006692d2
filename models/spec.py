"""What every zoo architecture provides: its wire input, both framework builds and the weight port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import keras
    import torch


@dataclass(frozen=True)
class InputSpec:
    """The one wire input both servers accept: a name, a dtype and the shape of one instance."""

    name: str
    dtype: str  # "float32" or "int32"
    shape: tuple[int, ...]

    def batch_shape(self, n: int | None = None) -> tuple[int | None, ...]:
        """The shape of a batch of ``n`` instances (``None`` for a variable batch)."""
        return (n, *self.shape)

    def to_json(self) -> dict:
        """Plain data for manifests."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> InputSpec:
        """The spec ``to_json`` wrote."""
        return cls(data["name"], data["dtype"], tuple(data["shape"]))


@dataclass(frozen=True)
class Dataset:
    """Training data and held-out data, as wire-format inputs and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray


@dataclass(frozen=True)
class TrainingPlan:
    """A brief, deterministic training run: serving cost depends on the architecture, not on accuracy."""

    steps: int
    batch_size: int
    learning_rate: float


class Architecture(Protocol):
    """One model of the zoo, written natively in both frameworks.

    The PyTorch module and the Keras model both take the wire input (``input``) unchanged,
    images as NHWC float32 and text as int32 token ids, and both return float32 logits
    of shape ``[batch, num_classes]``.
    """

    name: str
    description: str
    input: InputSpec
    num_classes: int
    training: TrainingPlan

    def config(self) -> dict:
        """Every hyper-parameter that changes the artifacts (part of the content hash)."""
        ...

    def dataset(self, seed: int) -> Dataset:
        """Offline data: training inputs and at least 256 held-out inputs."""
        ...

    def torch_module(self) -> torch.nn.Module:
        """The PyTorch module, freshly initialised."""
        ...

    def keras_model(self) -> keras.Model:
        """The Keras model (idiomatic NHWC), freshly initialised and built."""
        ...

    def port_weights(self, module: torch.nn.Module, model: keras.Model) -> None:
        """Copy every trained weight and buffer of ``module`` into ``model``."""
        ...
