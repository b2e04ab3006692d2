"""The in-process runtimes: built and parity-checked with every model, benched, reported, and the claims
they settle. Real exports, real torch.compile, XLA and ONNX Runtime; real TorchServe in the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from serveoff.errors import ParityError
from serveoff.loadtest.results import PointResult
from serveoff.models.build import BuildResult, build_zoo_model
from serveoff.report.claims import evaluate, load_claims
from serveoff.report.runs import load_run
from serveoff.serving import runtimes
from serveoff.serving.runtimes.onnx import OnnxRuntime
from serveoff.serving.targets import parse_target
from tests.commands import QUICK, leftovers, serveoff
from tests.conftest import TEST_MODELS

SETTLED = ("supported", "refuted", "inconclusive")


@pytest.mark.parametrize("name", TEST_MODELS)
def test_every_runtime_is_built_and_within_tolerance(built: dict[str, BuildResult], name: str) -> None:
    root = built[name].root
    parity = json.loads((root / "parity.json").read_text())
    assert parity["passed"] and parity["reference"] == "torch:inprocess"
    assert list(parity["runtimes"]) == list(runtimes.names())
    for target, figures in parity["runtimes"].items():
        assert figures["samples"] >= 256, target
        assert figures["max_abs_diff"] <= 1e-4 and figures["argmax_agreement"] == 1.0, (target, figures)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["runtimes"]["onnx:inprocess"]["versions"]["onnxruntime"] == "1.32.0"
    assert (root / manifest["files"]["onnx:inprocess"]).is_file()
    assert (root / manifest["files"]["torch:compiled"]).is_file()


def test_every_runtime_is_a_target() -> None:
    for name in runtimes.names():
        target = parse_target(name)
        assert target.is_baseline and target.name == name
    assert not parse_target("torchserve:rest").is_baseline


def test_a_corrupted_onnx_export_fails_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_export = OnnxRuntime.export

    def corrupted(self, inputs) -> None:
        real_export(self, inputs)
        path = self.artifact(inputs.layout)
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        values = numpy_helper.to_array(weight) * 1.01  # weights 1% off: a valid file, another function
        weight.CopyFrom(numpy_helper.from_array(values, weight.name))
        onnx.save(model, str(path))

    monkeypatch.setattr(OnnxRuntime, "export", corrupted)
    with pytest.raises(ParityError, match=r"digits-mlp: onnx:inprocess parity failed: max abs diff") as err:
        build_zoo_model("digits-mlp", tmp_path, log=lambda _: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "digits-mlp").exists()  # nothing half-built where a build would be


def test_a_run_without_tf_serving_settles_the_runtime_claims(
    artifacts_dir, built, tmp_path, env, marker
) -> None:
    args = ["run", "--server", "torchserve", "--artifacts", str(artifacts_dir), "--model", "digits-mlp"]
    args += ["--out", str(tmp_path), "--run-id", "run", "--concurrency", "1,2", *QUICK]
    done = serveoff(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert leftovers(marker) == []
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    targets = {p["target"] for p in results["points"]}
    assert targets == {"torchserve:rest", "torchserve:grpc", *runtimes.names()}  # no TF Serving
    startups = {s["target"]: s for s in results["runtimes"]}
    assert set(startups) == set(runtimes.names())
    for name, startup in startups.items():
        assert startup["load_s"] >= 0 and startup["first_call_ms"] > 0 and startup["warm_call_ms"] > 0
        assert (startup["compile_s"] is not None) == runtimes.get(name).compiles, name
    assert "In-process runtimes" in (tmp_path / "run" / "report.md").read_text()

    run = load_run(tmp_path / "run")
    verdicts = {v.claim.id: v for v in evaluate(load_claims(), run)}
    settled = [v for v in verdicts.values() if v.status in SETTLED]
    assert len(settled) >= 6, {k: (v.status, v.reason) for k, v in verdicts.items()}
    assert all(v.evidence for v in settled)  # each names the figures behind it
    for claim_id, a, b in [("onnx-optimized-engine", "onnx:inprocess", "torch:inprocess"),
                           ("torch-compile-lower-latency", "torch:compiled", "torch:inprocess"),
                           ("xla-lower-latency", "tf:xla", "tf:inprocess")]:  # fmt: skip
        assert verdicts[claim_id].status == expected_better(run.points, a, b), verdicts[claim_id].reason
    assert verdicts["tfserving-lower-latency"].status == "not testable"


def expected_better(points: list[PointResult], a: str, b: str) -> str:
    """The `better ... metric: p50` verdict recomputed from the intervals in the results."""
    p50 = {(p.target, p.label): p.summary.latency("p50") for p in points}
    labels = [label for target, label in p50 if target == a and (b, label) in p50]
    a_wins = sum(p50[a, x].high < p50[b, x].low for x in labels)
    b_wins = sum(p50[b, x].high < p50[a, x].low for x in labels)
    if a_wins == len(labels):
        return "supported"
    return "refuted" if b_wins and not a_wins else "inconclusive"
