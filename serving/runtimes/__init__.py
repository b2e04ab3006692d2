"""In-process runtimes: the same trained weights run in this process by one engine each, one file each.

A runtime is a target name (``torch:compiled``), the distributions whose versions it records, an export
step that ``serveoff build`` runs to write its own artifact (when it needs one) and a loader that turns the
artifact directory into a runner with ``predict(batch)``, under a ``ServerConfig``'s thread counts. Adding
one is one more file here and one more entry in ``RUNTIMES``; the build parity-checks it and the bench
measures it by default wherever its libraries are installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from serveoff.errors import ServeoffError

if TYPE_CHECKING:
    import torch

    from serveoff.models.artifacts import ArtifactLayout
    from serveoff.serving.resources import ServerConfig

# Target name -> "module:attribute" of its Runtime, imported on first use; the order is the report's.
RUNTIMES: dict[str, str] = {
    "torch:inprocess": "serveoff.serving.runtimes.torchscript:RUNTIME",
    "torch:compiled": "serveoff.serving.runtimes.compiled:RUNTIME",
    "tf:inprocess": "serveoff.serving.runtimes.savedmodel:RUNTIME",
    "tf:xla": "serveoff.serving.runtimes.xla:RUNTIME",
    "onnx:inprocess": "serveoff.serving.runtimes.onnx:RUNTIME",
}
# What each runtime needs installed, known without importing it (the registry's cheap half).
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch:inprocess": ("torch",),
    "torch:compiled": ("torch",),
    "tf:inprocess": ("tensorflow",),
    "tf:xla": ("tensorflow",),
    "onnx:inprocess": ("onnxruntime", "onnx", "onnxscript", "torch"),  # the engine first
}
# The systems the runtimes belong to, as claims and reports name them.
SYSTEM_TITLES = {
    "torch": "in-process PyTorch",
    "tf": "in-process TensorFlow",
    "onnx": "in-process ONNX Runtime",
}


class Runner(Protocol):
    """A loaded model: a numpy batch in, a numpy batch of outputs."""

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


class Unavailable(Exception):
    """A runtime cannot be built from what this build has (e.g. no PyTorch module to compile)."""


@dataclass(frozen=True)
class BuildInputs:
    """What a runtime's export step may use: the written artifacts, the eager module of a zoo build
    (``None`` for your own model, which arrives as TorchScript) and a small batch of wire inputs."""

    layout: ArtifactLayout
    module: torch.nn.Module | None
    example: np.ndarray


class Runtime(Protocol):
    """One in-process runtime (see the module's docstring)."""

    target: str  # e.g. "torch:compiled"
    title: str  # how reports name it, e.g. "torch.compile (inductor)"
    compiles: bool  # whether its first call on a batch shape compiles (its compile time is measured)

    def artifact(self, layout: ArtifactLayout) -> Path | None:
        """Its own artifact in ``layout`` (``None`` when it runs one the build writes anyway)."""
        ...

    def export(self, inputs: BuildInputs) -> None:
        """Write its artifact (nothing when it has none); ``Unavailable`` when the inputs do not allow it."""
        ...

    def load(self, layout: ArtifactLayout, config: ServerConfig) -> Runner:
        """A runner over ``layout``'s artifact, with the config's thread counts applied."""
        ...


def names() -> tuple[str, ...]:
    """Every registered runtime's target name."""
    return tuple(RUNTIMES)


def systems() -> tuple[str, ...]:
    """The systems the runtimes belong to (``torch``, ``tf``, ...), once each."""
    return tuple(dict.fromkeys(name.partition(":")[0] for name in RUNTIMES))


def get(name: str) -> Runtime:
    """The runtime called ``name`` (imported on first use); one clear line for an unknown name."""
    if name not in RUNTIMES:
        raise ServeoffError(f"unknown in-process runtime {name!r}; choose from: {', '.join(RUNTIMES)}")
    module, attribute = RUNTIMES[name].split(":")
    return getattr(import_module(module), attribute)


def versions(name: str) -> dict[str, str]:
    """The installed version of every distribution runtime ``name`` needs (missing ones left out)."""
    found = {}
    for package in PACKAGES[name]:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


def installed(name: str) -> bool:
    """Whether every distribution runtime ``name`` needs is installed here."""
    return len(versions(name)) == len(PACKAGES[name])


def built(name: str, manifest: dict) -> str | None:
    """Why the build of ``manifest`` has no runtime ``name``, or ``None`` when it has it. A build from
    before the runtimes were recorded has the two it always had, TorchScript and the SavedModel."""
    recorded = manifest.get("runtimes")
    if recorded is None:
        return None if name in ("torch:inprocess", "tf:inprocess") else "built before this runtime existed"
    entry = recorded.get(name)
    if entry is None:
        return "not built"
    return entry.get("unavailable")


def source(name: str) -> str:
    """How results name a runtime's figures: ``in-process torch 2.13.0`` for a framework's plain runtime,
    ``in-process torch:compiled 2.13.0`` for another, with the version of the engine that runs it."""
    system, _, kind = name.partition(":")
    engine = versions(name).get(PACKAGES[name][0], "not installed")
    return f"in-process {system if kind == 'inprocess' else name} {engine}"


def first_line(err: BaseException) -> str:
    """The first line of an error's message (or its type), for one-line reports."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
