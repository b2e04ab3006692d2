"""The model zoo: every architecture by name, imported only when asked for."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import built_source, user_build
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


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` is a zoo model's, in any case (on a case-insensitive disk it is the same folder)."""
    return name.lower() in {known.lower() for known in ZOO}


def check_servable(name: str, artifacts: Path) -> str:
    """``name`` if it is a zoo model or your own model built into ``artifacts``; one clear line otherwise."""
    if name in ZOO or user_build(artifacts, name) is not None:
        return name
    if built_source(artifacts / name) == "user":
        raise ServeoffError(
            f"{artifacts / name} holds an incomplete build of your own model {name!r}, or one made by an "
            f"older serveoff; build it again with `serveoff build --name {name} --torchscript MODEL.pt "
            f"--savedmodel SAVEDMODEL_DIR --sample-inputs INPUTS.npy --out {artifacts}`"
        )
    raise ServeoffError(
        f"unknown model {name!r}: not in the zoo ({', '.join(ZOO)}) and {artifacts / name} holds no build of "
        f"your own; build yours first with `serveoff build --name {name} --torchscript MODEL.pt "
        f"--savedmodel SAVEDMODEL_DIR --sample-inputs INPUTS.npy --out {artifacts}`"
    )


def architecture_class(name: str) -> type:
    """The class of zoo architecture ``name``."""
    module, cls = ZOO[check_known(name)].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def architecture(name: str) -> Architecture:
    """A fresh instance of zoo architecture ``name``."""
    return architecture_class(name)()
