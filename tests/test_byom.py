"""Bring your own model, end to end: `serveoff build --name` from your own artifacts, then serve it on every
server, measure it and report it, like a zoo model.

Your own artifacts are made here the way a user has them: a TorchScript file and a SavedModel directory
(those of the digits-mlp test build, copied out) and a .npy of inputs. The TF Serving arm runs against the
test fake (``tests/fakes/tensorflow_model_server``), as everywhere in the suite.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from serveoff.cli import main
from serveoff.models.artifacts import ArtifactLayout, read_manifest
from serveoff.models.build import BuildResult
from serveoff.serving.targets import SERVERS
from tests.commands import QUICK, leftovers, serveoff

from .cli_runner import run_cli


@pytest.fixture(scope="module")
def own_build(built: dict[str, BuildResult], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifacts directory into which `serveoff build --name mine` packaged a model of one's own."""
    digits = ArtifactLayout(built["digits-mlp"].root, "digits-mlp")
    mine = tmp_path_factory.mktemp("mine")
    shutil.copyfile(digits.torchscript, mine / "model.pt")
    shutil.copytree(digits.savedmodel, mine / "saved_model")
    np.save(mine / "inputs.npy", np.random.default_rng(3).random((64, 8, 8, 1), dtype=np.float32))
    out = mine / "artifacts"
    args = ["serveoff", "build", "--name", "mine", "--torchscript", str(mine / "model.pt")]
    args += ["--savedmodel", str(mine / "saved_model"), "--sample-inputs", str(mine / "inputs.npy")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*args, "--out", str(out)])
        try:
            main()
        except SystemExit as stop:
            assert stop.code in (0, None)
    assert read_manifest(out / "mine")["source"] == "user"
    return out


def test_your_own_model_runs_on_every_server_into_a_report(own_build, tmp_path, env, marker) -> None:
    args = ["run", "--model", "mine", "--artifacts", str(own_build), "--no-baselines"]
    done = serveoff([*args, "--out", str(tmp_path), "--run-id", "mine", "--concurrency", "1", *QUICK], env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "mine" / "results.json").read_text())
    assert results["status"] == "complete"
    targets = [f"{server}:{protocol}" for server in SERVERS for protocol in ("rest", "grpc")]
    assert {(p["model"], p["target"]) for p in results["points"]} == {("mine", t) for t in targets}
    assert all(p["summary"]["requests"] > 0 and p["summary"]["failed"] == 0 for p in results["points"])
    model = results["manifest"]["models"]["mine"]
    assert model["content_hash"] == read_manifest(own_build / "mine")["content_hash"]
    assert "mine" in (tmp_path / "mine" / "report.md").read_text()
    assert leftovers(marker) == []


def test_prepare_writes_a_stack_for_your_own_model(own_build, tmp_path, capsys, monkeypatch) -> None:
    stack = tmp_path / "stack"
    args = ["prepare", "--model", "mine", "--artifacts", str(own_build), "--stack", str(stack)]
    result = run_cli(args, capsys, monkeypatch)
    assert result.code == 0, result.stderr
    doc = json.loads((stack / "stack.json").read_text())
    assert doc["models"] == {"mine": str((own_build / "mine").resolve())}
    assert "mine.mar" in (stack / "torchserve" / "launch.sh").read_text() + "".join(
        p.read_text() for p in (stack / "torchserve").glob("*.properties")
    )


@pytest.mark.parametrize("command", [["up", "--native"], ["prepare"]])
def test_a_name_that_is_neither_zoo_nor_built_says_how_to_build_it(command, tmp_path, capsys, monkeypatch):
    result = run_cli([*command, "--model", "mine", "--artifacts", str(tmp_path)], capsys, monkeypatch)
    lines = result.stderr.strip().splitlines()
    assert result.code == 2 and len(lines) == 1, result.stderr
    assert "unknown model 'mine'" in lines[0] and "serveoff build --name mine" in lines[0]
    assert f"--out {tmp_path}" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_a_name_that_is_not_built_before_starting_anything(tmp_path, env) -> None:
    done = serveoff(["run", "--model", "mine", "--artifacts", str(tmp_path), "--out", str(tmp_path)], env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("serveoff: error: unknown model 'mine'")
    assert list(tmp_path.iterdir()) == []
