"""serveoff's TorchServe handler, run in-process on TorchServe's own Context class.

The server itself is exercised end to end in the serving tests; here one handler call gets a
whole server-side batch, so mixed formats and a bad request inside a batch can be checked exactly.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from ts.context import Context, RequestProcessor

from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.models.runners import TorchScriptRunner
from serveoff.serving.torchserve.package import mar_of


def load_handler(mar: Path, into: Path) -> tuple[ModuleType, Context]:
    """Unpack a .mar as TorchServe does and import its handler with a fresh module state."""
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(into)
    manifest = json.loads((into / "MAR-INF" / "MANIFEST.json").read_text())
    spec = importlib.util.spec_from_file_location(f"handler_{into.name}", into / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    context = Context(manifest["model"]["modelName"], str(into), manifest, 8, None, "0.12.0")
    assert module.handle(None, context) is None  # TorchServe's load-time call
    return module, context


def run_batch(module: ModuleType, context: Context, rows: list[dict]) -> list:
    context.request_processor = [RequestProcessor({}) for _ in rows]
    return module.handle(rows, context)


@pytest.fixture(params=["digits-mlp", "text-encoder-tiny"])
def model(request, built: dict[str, BuildResult], tmp_path: Path):
    layout = ArtifactLayout(built[request.param].root, request.param)
    module, context = load_handler(mar_of(layout), tmp_path)
    samples = np.load(layout.samples)
    expected = TorchScriptRunner(layout.torchscript).predict(samples)
    return module, context, samples, expected


def test_mixed_formats_in_one_batch_match_torchscript(model) -> None:
    module, context, samples, expected = model
    rows = [
        {"body": {"instances": samples[:3].tolist()}},  # TF Serving row format, decoded by TorchServe
        {"body": {"inputs": samples[3:4].tolist()}},  # columnar format
        {"body": samples[4:6].tolist()},  # a bare JSON list
        {"data": samples[6:8].astype(samples.dtype.newbyteorder("<")).tobytes()},  # raw tensor bytes (REST)
        {module._service.input_name: samples[:1].tobytes()},  # gRPC: the input map's value
    ]
    replies = run_batch(module, context, rows)
    assert len(replies) == len(rows)
    got = [np.asarray(json.loads(r)["predictions"], dtype=np.float32) for r in replies[:3]]
    got += [np.frombuffer(r, dtype="<f4").reshape(-1, expected.shape[1]) for r in replies[3:]]
    np.testing.assert_allclose(np.concatenate(got[:4]), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[4], expected[:1], atol=1e-5, rtol=0)
    assert context.get_response_content_type(3) == "application/octet-stream"
    assert context.get_response_content_type(0) == "application/json"
    assert all(context.get_response_status(i)[0] == 200 for i in range(len(rows)))


def test_a_bad_request_fails_alone(model) -> None:
    module, context, samples, expected = model
    rows = [
        {"body": {"instances": samples[:2].tolist()}},
        {"body": {"instances": [[1, 2, 3]]}},
        {"data": b"\x00\x01\x02"},
        {"body": {"wrong": 1}},
        {"body": {"instances": samples[2:3].tolist()}},
    ]
    replies = run_batch(module, context, rows)
    assert [context.get_response_status(i)[0] for i in range(len(rows))] == [200, 400, 400, 400, 200]
    assert "expected [n, *" in json.loads(replies[1])["error"]
    assert "not a whole number" in json.loads(replies[2])["error"]
    assert "instances" in json.loads(replies[3])["error"]
    np.testing.assert_allclose(json.loads(replies[0])["predictions"], expected[:2], atol=1e-5, rtol=0)
    np.testing.assert_allclose(json.loads(replies[4])["predictions"], expected[2:3], atol=1e-5, rtol=0)
