"""Lay out a SavedModel the way TF Serving loads it: ``<base>/<name>/<version>/``."""

from __future__ import annotations

import os
from pathlib import Path

from serveoff.models.artifacts import ArtifactLayout

VERSION = 1
SERVER_DIR = "tfserving"  # below the model's artifact directory: the model base paths


def model_base_path(layout: ArtifactLayout) -> Path:
    """The directory TF Serving's ``--model_base_path`` points at for the model."""
    return layout.server_dir(SERVER_DIR) / layout.name


def version_dir(layout: ArtifactLayout, version: int = VERSION) -> Path:
    """Where version ``version`` of the SavedModel lives."""
    return model_base_path(layout) / str(version)


def link_savedmodel(layout: ArtifactLayout) -> Path:
    """Make version 1 of the model a link to the build's SavedModel (relative, so that the artifact
    directory may move or be mounted elsewhere) and return it."""
    target = version_dir(layout)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(os.path.relpath(layout.savedmodel, target.parent), target_is_directory=True)
    return target
