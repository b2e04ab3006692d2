"""`serveoff build` on the command line: bring your own model, and one clear line for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from serveoff.models.artifacts import ArtifactLayout, read_manifest
from serveoff.models.build import BuildResult
from serveoff.models.export import export_savedmodel
from serveoff.models.spec import InputSpec

from .cli_runner import run_cli


def user_args(layout: ArtifactLayout, samples: Path, name: str = "mine") -> list[str]:
    return [
        "build",
        "--torchscript", str(layout.torchscript),
        "--savedmodel", str(layout.savedmodel),
        "--sample-inputs", str(samples),
        "--name", name,
    ]  # fmt: skip


@pytest.fixture
def digits(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built["digits-mlp"].root, "digits-mlp")


def assert_one_clear_line(result, *fragments: str) -> None:
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("serveoff: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_own_model_is_packaged_with_the_same_parity_check(digits, tmp_path, capsys, monkeypatch) -> None:
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(1).random((300, 8, 8, 1), dtype=np.float32))
    out = tmp_path / "out"
    result = run_cli([*user_args(digits, samples), "--out", str(out)], capsys, monkeypatch)
    assert result.code == 0, result.stderr
    manifest = read_manifest(out / "mine")
    assert manifest is not None and manifest["source"] == "user"
    assert manifest["input"] == {"name": "input", "dtype": "float32", "shape": [8, 8, 1]}
    parity = json.loads((out / "mine" / "parity.json").read_text())
    assert parity["samples"] == 300 and parity["passed"]
    assert (out / "mine" / "torchserve" / "mine.mar").is_file()
    assert (out / "mine" / "tfserving" / "mine" / "1" / "saved_model.pb").is_file()


def test_unknown_model_name(tmp_path, capsys, monkeypatch) -> None:
    result = run_cli(
        ["build", "--model", "digits-mlp", "--model", "no-such-model", "--out", str(tmp_path)],
        capsys,
        monkeypatch,
    )
    assert_one_clear_line(result, "unknown model 'no-such-model'", "digits-mlp")
    assert list(tmp_path.iterdir()) == [], "nothing is built when one name is unknown"


def test_unreadable_torchscript(digits, tmp_path, capsys, monkeypatch) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a torchscript archive")
    layout = ArtifactLayout(tmp_path, "x")
    shutil.copytree(digits.savedmodel, layout.savedmodel)
    layout.torchscript.parent.mkdir(parents=True)
    bogus.rename(layout.torchscript)
    result = run_cli(
        [*user_args(layout, digits.samples), "--out", str(tmp_path / "out")], capsys, monkeypatch
    )
    assert_one_clear_line(result, "cannot load TorchScript")
    assert not (tmp_path / "out" / "mine").exists()


def test_directory_that_is_not_a_savedmodel(digits, tmp_path, capsys, monkeypatch) -> None:
    args = user_args(digits, digits.samples)
    args[args.index("--savedmodel") + 1] = str(tmp_path)
    result = run_cli([*args, "--out", str(tmp_path / "out")], capsys, monkeypatch)
    assert_one_clear_line(result, "cannot load SavedModel")


def test_samples_the_savedmodel_does_not_take(digits, tmp_path, capsys, monkeypatch) -> None:
    samples = tmp_path / "samples.npy"
    np.save(samples, np.zeros((4, 16), dtype=np.int32))
    result = run_cli([*user_args(digits, samples), "--out", str(tmp_path / "out")], capsys, monkeypatch)
    assert_one_clear_line(result, "takes float32 [-1, 8, 8, 1]", "int32 [4, 16]")
    assert not (tmp_path / "out").exists()


def test_artifacts_whose_output_shapes_disagree(digits, tmp_path, capsys, monkeypatch) -> None:
    inputs = keras.Input((8, 8, 1), name="input")
    five_classes = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))
    other = tmp_path / "other" / "1"
    export_savedmodel(five_classes, InputSpec("input", "float32", (8, 8, 1)), other)
    args = user_args(digits, digits.samples)
    args[args.index("--savedmodel") + 1] = str(other)
    result = run_cli([*args, "--out", str(tmp_path / "out")], capsys, monkeypatch)
    assert_one_clear_line(result, "disagree on the output shape", "[8, 10]", "[8, 5]")
    assert not (tmp_path / "out" / "mine").exists()
    assert not [p for p in (tmp_path / "out").iterdir()], "no staging directory is left behind"


def test_partial_own_model_flags(tmp_path, capsys, monkeypatch) -> None:
    result = run_cli(["build", "--torchscript", str(tmp_path / "m.pt")], capsys, monkeypatch)
    assert_one_clear_line(result, "--savedmodel", "--sample-inputs", "--name")


def test_bad_model_name_for_own_model(digits, tmp_path, capsys, monkeypatch) -> None:
    result = run_cli(user_args(digits, digits.samples, name="../escape"), capsys, monkeypatch)
    assert_one_clear_line(result, "model name '../escape' is not usable")


def test_console_script_reports_one_line_and_exit_code() -> None:
    serveoff = Path(sys.executable).with_name("serveoff")
    result = subprocess.run(
        [str(serveoff), "build", "--model", "nope"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "serveoff: error: unknown model 'nope'; choose one of: "
        "digits-mlp, resnet50, text-encoder, resnet50-tiny, text-encoder-tiny"
    ]


@pytest.mark.parametrize("name", ["digits-mlp", "Digits-MLP", "resnet50"])
def test_a_zoo_name_is_refused_for_your_own_model(name, digits, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "out"
    result = run_cli([*user_args(digits, digits.samples, name=name), "--out", str(out)], capsys, monkeypatch)
    assert_one_clear_line(result, f"--name {name!r} is a zoo model's name", "another name")
    assert not out.exists()


def fake_build(root: Path, source: str) -> None:
    """A directory that claims to hold a build of ``source``'s kind (its manifest is all that is read)."""
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"schema": "serveoff.artifact/1", "source": source}))


def test_a_zoo_build_never_replaces_your_own_model(tmp_path, capsys, monkeypatch) -> None:
    fake_build(tmp_path / "digits-mlp", "user")  # built under a zoo name by an older serveoff
    result = run_cli(["build", "--model", "digits-mlp", "--out", str(tmp_path)], capsys, monkeypatch)
    assert_one_clear_line(result, "holds a model of your own", "never replaces it")
    assert json.loads((tmp_path / "digits-mlp" / "manifest.json").read_text())["source"] == "user"


def test_your_own_model_never_replaces_a_zoo_build(digits, tmp_path, capsys, monkeypatch) -> None:
    fake_build(tmp_path / "mine", "zoo")
    result = run_cli([*user_args(digits, digits.samples), "--out", str(tmp_path)], capsys, monkeypatch)
    assert_one_clear_line(result, "holds a zoo build", "another --name or --out")
    assert json.loads((tmp_path / "mine" / "manifest.json").read_text())["source"] == "zoo"


def test_sample_inputs_that_are_not_one_npy_array(digits, tmp_path, capsys, monkeypatch) -> None:
    batch = np.load(digits.samples)
    np.savez(tmp_path / "inputs.npz", batch=batch)
    (tmp_path / "inputs.csv").write_text("0.1,0.2\n")
    (tmp_path / "folder.npy").mkdir()
    cases = {
        "inputs.npz": "are an .npz archive, not one array",
        "inputs.csv": "are not a .npy file",
        "folder.npy": "cannot read sample inputs",
        "missing.npy": "cannot read sample inputs",
    }
    for file, message in cases.items():
        args = [*user_args(digits, tmp_path / file), "--out", str(tmp_path / "out")]
        result = run_cli(args, capsys, monkeypatch)
        assert_one_clear_line(result, message, "numpy.save")
    assert not (tmp_path / "out").exists()


def test_an_artifacts_directory_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = run_cli(["build", "--model", "digits-mlp", "--out", str(tmp_path / "file")], capsys, monkeypatch)
    assert_one_clear_line(result, f"cannot build into {tmp_path / 'file'}", "another artifacts directory")
