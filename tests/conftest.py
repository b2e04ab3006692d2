"""Shared fixtures: model artifacts are built once per session and cached by content hash."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from serveoff.models.build import BuildResult, build_zoo_model
from tests.commands import FAKES

FULL_MODELS = "SERVEOFF_FULL_MODELS"  # set to 1 to build the full-size benchmark models too (minutes)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (the full-size models' build, ten minutes or more on 2 cores) run only when
    ``SERVEOFF_FULL_MODELS=1``: the tiny versions of the same code run in every other test."""
    if os.environ.get(FULL_MODELS) == "1":
        return
    skip = pytest.mark.skip(reason=f"builds the full-size models (minutes); set {FULL_MODELS}=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

# The reduced-size variants keep the suite fast; the full models are built by `serveoff build`.
TEST_MODELS = ("digits-mlp", "resnet50-tiny", "text-encoder-tiny")


@pytest.fixture(scope="session")
def artifacts_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pytest's cache directory, so unchanged models are not rebuilt across sessions (else a temp dir)."""
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("serveoff-artifacts") if cache else tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def built(artifacts_dir: Path) -> dict[str, BuildResult]:
    """The test models, built (or found up to date) once per session."""
    return {name: build_zoo_model(name, artifacts_dir, log=lambda _: None) for name in TEST_MODELS}


@pytest.fixture(scope="module")
def marker() -> str:
    """An environment value every process started by a module's commands inherits, to find leftovers."""
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def env(marker: str) -> dict[str, str]:
    """The commands' environment: the TF Serving test fake and this venv on PATH, and the marker."""
    path = [str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    return os.environ | {"PATH": os.pathsep.join(path), "SERVEOFF_TEST_MARK": marker}
