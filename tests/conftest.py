"""Shared fixtures: model artifacts are built once per session and cached by content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from serveoff.models.build import BuildResult, build_zoo_model

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
