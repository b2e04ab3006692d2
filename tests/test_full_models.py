"""The benchmark's full-size models: `serveoff build` produces all three with parity holding.

Slow on first run (ResNet-50 training and its 256-image parity check take minutes on 2 cores); the
artifacts are cached in pytest's cache directory, so later runs only re-check them.
"""

from __future__ import annotations

import json

import pytest

from serveoff.models.artifacts import read_manifest
from serveoff.models.zoo import DEFAULT_MODELS

from .cli_runner import run_cli


@pytest.mark.slow
def test_serveoff_build_makes_the_three_benchmark_models(artifacts_dir, capsys, monkeypatch) -> None:
    result = run_cli(["build", "--out", str(artifacts_dir)], capsys, monkeypatch)
    assert result.code == 0, result.stderr
    for name in DEFAULT_MODELS:
        root = artifacts_dir / name
        assert read_manifest(root) is not None, f"{name} is incomplete"
        parity = json.loads((root / "parity.json").read_text())
        assert parity["samples"] >= 256
        assert parity["max_abs_diff"] <= 1e-4, f"{name}: {parity}"
        assert parity["argmax_agreement"] == 1.0, f"{name}: {parity}"
