"""`serveoff build` of the zoo: artifacts, parity, caching, and failure on a broken port."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from serveoff.errors import ParityError
from serveoff.models import zoo
from serveoff.models.artifacts import ArtifactLayout, read_manifest
from serveoff.models.build import BuildResult, build_zoo_model, cached
from serveoff.models.runners import SavedModelRunner, TorchScriptRunner
from serveoff.serving.tfserving.package import version_dir
from serveoff.serving.torchserve.package import mar_of

from .conftest import TEST_MODELS


@pytest.mark.parametrize("name", TEST_MODELS)
def test_parity_holds_on_held_out_inputs(built: dict[str, BuildResult], name: str) -> None:
    parity = json.loads((built[name].root / "parity.json").read_text())
    assert parity["samples"] >= 256
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["argmax_agreement"] == 1.0
    assert parity["passed"] is True


@pytest.mark.parametrize("name", TEST_MODELS)
def test_artifacts_match_the_manifest(built: dict[str, BuildResult], name: str) -> None:
    root = built[name].root
    manifest = read_manifest(root)
    assert manifest is not None, "manifest missing or a promised file is absent"
    arch = zoo.architecture(name)
    assert manifest["input"] == arch.input.to_json()
    assert manifest["output"]["shape"] == [arch.num_classes]
    assert {"torch", "tensorflow", "torchserve"} <= manifest["versions"].keys()

    layout = ArtifactLayout(root, name)
    with zipfile.ZipFile(mar_of(layout)) as mar:
        names = set(mar.namelist())
        assert {"handler.py", "model.pt", "model_spec.json", "MAR-INF/MANIFEST.json"} <= names
        assert json.loads(mar.read("model_spec.json"))["input"] == arch.input.to_json()
    assert (version_dir(layout) / "saved_model.pb").is_file()
    # every registered server's packaging step ran; TF Serving's version 1 is the build's own SavedModel,
    # linked relatively so that the directory can move or be mounted elsewhere
    assert {"mar", "tfserving", "savedmodel"} <= manifest["files"].keys()
    assert not Path(os.readlink(version_dir(layout))).is_absolute()
    assert version_dir(layout).resolve() == layout.savedmodel.resolve()


@pytest.mark.parametrize("name", TEST_MODELS)
def test_in_process_runners_agree_on_the_kept_samples(built: dict[str, BuildResult], name: str) -> None:
    layout = ArtifactLayout(built[name].root, name)
    samples = np.load(layout.samples)
    tf_runner = SavedModelRunner(layout.savedmodel)
    arch = zoo.architecture(name)
    assert (tf_runner.input.name, tf_runner.input.dtype) == (arch.input.name, arch.input.dtype)
    assert tf_runner.input.shape == (None, *arch.input.shape)
    torch_out = TorchScriptRunner(layout.torchscript).predict(samples)
    tf_out = tf_runner.predict(samples)
    assert torch_out.shape == (len(samples), arch.num_classes)
    np.testing.assert_allclose(torch_out, tf_out, atol=1e-4, rtol=0)


def test_second_build_is_served_from_the_cache(built: dict[str, BuildResult], artifacts_dir: Path) -> None:
    mar = mar_of(ArtifactLayout(built["digits-mlp"].root, "digits-mlp"))
    before = mar.stat().st_mtime_ns
    again = build_zoo_model("digits-mlp", artifacts_dir, log=lambda _: None)
    assert again.cached
    assert mar.stat().st_mtime_ns == before


def test_cached_figures_are_judged_by_the_requested_tolerance(built: dict[str, BuildResult]) -> None:
    root = built["resnet50-tiny"].root
    manifest = read_manifest(root)
    figures = json.loads((root / "parity.json").read_text())
    assert cached(root, manifest["content_hash"], atol=1e-4) is not None
    assert cached(root, "another-hash", atol=1e-4) is None
    if figures["max_abs_diff"] > 0:  # a tolerance tighter than the measured difference needs a rebuild
        assert cached(root, manifest["content_hash"], atol=figures["max_abs_diff"] / 2) is None


def test_one_corrupted_ported_weight_fails_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    arch_class = zoo.architecture_class("digits-mlp")
    honest_port = arch_class.port_weights

    def port_then_corrupt(self, module, model: keras.Model) -> None:
        honest_port(self, module, model)
        kernel, bias = model.get_layer("out").get_weights()
        bias[3] += 1e-3  # one number, ten times the tolerance
        model.get_layer("out").set_weights([kernel, bias])

    monkeypatch.setattr(arch_class, "port_weights", port_then_corrupt)
    with pytest.raises(ParityError, match="parity failed"):
        build_zoo_model("digits-mlp", tmp_path, log=lambda _: None)
    assert list(tmp_path.iterdir()) == [], "a failed build must leave nothing behind"


def test_keras_default_batchnorm_eps_fails_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    arch_class = zoo.architecture_class("resnet50-tiny")
    honest_keras_model = arch_class.keras_model

    def with_keras_default_eps(self) -> keras.Model:
        model = honest_keras_model(self)
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms
        for layer in norms:
            layer.epsilon = 1e-3  # Keras' default, where PyTorch uses 1e-5
        return model

    monkeypatch.setattr(arch_class, "keras_model", with_keras_default_eps)
    with pytest.raises(ParityError):
        build_zoo_model("resnet50-tiny", tmp_path, log=lambda _: None)
    assert not (tmp_path / "resnet50-tiny").exists()
