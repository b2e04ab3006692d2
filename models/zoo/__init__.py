"""The model zoo: every architecture by name, imported only when asked for."""

from __future__ import annotations

from importlib import import_module

from serveoff.errors import ServeoffError
from serveoff.models.spec import Architecture

ZOO: dict[str, str] = {
    "digits-mlp": "digits_mlp:DigitsMLP",
    "resnet50": "resnet:ResNet50",
    "text-encoder": "text_encoder:TextEncoder",
    "resnet50-tiny": "resnet:ResNet50Tiny",
    "text-encoder-tiny": "text_encoder:TextEncoderTiny",
}

# What `serveoff build` builds when no --model is given: the benchmark's full-size models.
DEFAULT_MODELS = ("digits-mlp", "resnet50", "text-encoder")


def check_known(name: str) -> str:
    """``name`` if the zoo has it; a clear error naming the known models otherwise."""
    if name not in ZOO:
        raise ServeoffError(f"unknown model {name!r}; choose one of: {', '.join(ZOO)}")
    return name


def architecture_class(name: str) -> type:
    """The class of zoo architecture ``name``."""
    module, cls = ZOO[check_known(name)].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def architecture(name: str) -> Architecture:
    """A fresh instance of zoo architecture ``name``."""
    return architecture_class(name)()
