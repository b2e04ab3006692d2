"""The artifact directory of one model: its layout and its manifest, the contract with later stages.

<out>/<name>/
  manifest.json            what was built, from what, with which versions
  parity.json              TorchScript vs SavedModel figures, and every in-process runtime's
  samples.npy              a few held-out wire-format inputs, for payloads
  torchscript/model.pt     the TorchScript file (in-process PyTorch, KServe)
  savedmodel/              the SavedModel (in-process TensorFlow)
  torch-export/model.pt2   the exported program torch:compiled compiles (zoo builds)
  onnx/model.onnx          the ONNX export onnx:inprocess runs
  <server>/                what a server's packaging step made of them (``server_dir``), e.g.
                           torchserve/<name>.mar, tfserving/<name>/1 (a link to savedmodel/)
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from serveoff.errors import ServeoffError

SCHEMA = "serveoff.artifact/2"  # /1 kept the SavedModel inside TF Serving's folder: rebuilt, not read
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$", re.IGNORECASE)
VERSIONED_PACKAGES = ("torch", "tensorflow", "keras", "torchserve", "torch-model-archiver", "numpy")


def check_name(name: str) -> str:
    """``name`` if it can name a .mar, a TF Serving model and a URL path; a clear error otherwise."""
    if not NAME_PATTERN.fullmatch(name):
        raise ServeoffError(
            f"model name {name!r} is not usable; use letters, digits, '-', '_' or '.' (at most 64, starting "
            "with a letter or digit)"
        )
    return name


def library_versions() -> dict[str, str]:
    """Versions of every library that shapes an artifact, the in-process runtimes' included."""
    from serveoff.serving import runtimes

    found = {"python": platform.python_version()} | {pkg: version(pkg) for pkg in VERSIONED_PACKAGES}
    for name in runtimes.names():
        found |= runtimes.versions(name)
    return found


@dataclass(frozen=True)
class ArtifactLayout:
    """Paths inside the artifact directory of model ``name``."""

    root: Path
    name: str

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def parity(self) -> Path:
        return self.root / "parity.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples.npy"

    @property
    def torchscript(self) -> Path:
        return self.root / "torchscript" / "model.pt"

    @property
    def savedmodel(self) -> Path:
        return self.root / "savedmodel"

    def server_dir(self, server: str) -> Path:
        """Where server ``server``'s packaging step writes what it serves (its own layout below it)."""
        return self.root / server

    def files(self) -> dict[str, str]:
        """Every file of the build itself that the manifest promises, relative to the root (the servers'
        packaging and the runtimes add theirs)."""
        paths = {
            "parity": self.parity,
            "samples": self.samples,
            "torchscript": self.torchscript,
            "savedmodel": self.savedmodel,
        }
        return {key: str(path.relative_to(self.root)) for key, path in paths.items()}


def require_manifest(layout: ArtifactLayout) -> dict:
    """The manifest of a complete build of ``layout``; a clear error when there is none."""
    manifest = read_manifest(layout.root)
    if manifest is None:
        raise ServeoffError(
            f"model {layout.name!r} has no complete build in {layout.root}; build it with `serveoff build`"
        )
    return manifest


def built_source(root: Path) -> str | None:
    """Which kind of build ``root`` holds, complete or not: ``"zoo"``, ``"user"`` (your own model) or
    ``None`` when it holds none."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("source") if isinstance(manifest, dict) else None


def user_build(artifacts: Path, name: str) -> ArtifactLayout | None:
    """The layout of your own model ``name`` if ``artifacts`` holds a complete build of it, else ``None``."""
    if not NAME_PATTERN.fullmatch(name):
        return None  # not a name a build can have: never looked up as a path
    layout = ArtifactLayout(artifacts / name, name)
    manifest = read_manifest(layout.root)
    if manifest is None or manifest.get("source") != "user" or manifest.get("name") != name:
        return None
    return layout


def read_manifest(root: Path) -> dict | None:
    """The manifest of a complete artifact directory, or ``None`` when it is missing or incomplete."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        return None
    if not all((root / rel).exists() for rel in manifest.get("files", {}).values()):
        return None
    return manifest
