"""Lay out a SavedModel the way TF Serving loads it: ``<base>/<name>/<version>/``."""

from __future__ import annotations

import shutil
from pathlib import Path

VERSION = 1


def model_base_path(root: Path, name: str) -> Path:
    """The directory TF Serving's ``--model_base_path`` points at for model ``name``."""
    return root / name


def version_dir(root: Path, name: str, version: int = VERSION) -> Path:
    """Where version ``version`` of the SavedModel lives."""
    return model_base_path(root, name) / str(version)


def place_savedmodel(savedmodel: Path, root: Path, name: str) -> Path:
    """Copy a user's SavedModel directory into TF Serving's layout and return the version directory."""
    target = version_dir(root, name)
    shutil.copytree(savedmodel, target)
    return target
