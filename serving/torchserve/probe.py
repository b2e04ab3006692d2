"""What `serveoff probe` does to TorchServe: its model API on (127.0.0.1 only) and a version rollout."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import requests

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import Launch
from serveoff.serving.torchserve.config import HOST
from serveoff.serving.torchserve.package import mar_of
from serveoff.serving.torchserve.server import TorchServe

NEW_VERSION = "2.0"
HOW = ("register, then set-default, through the management API; the version that answered is the default "
       "one read after each slice (TorchServe's replies do not name it)")
MANIFEST = "MAR-INF/MANIFEST.json"
API_TIMEOUT_S = 120.0


class ProbedServer(TorchServe):
    """TorchServe with its management API's model calls on (register, set-default), for the rollout probe.

    Natively the management API listens on 127.0.0.1, as always. In a container it listens where the
    inference API does, and its port is published on the host's 127.0.0.1 only, so the probe reaches it;
    serveoff's other commands keep the model calls off and never publish the port.
    """

    def _prepare(self, bind: str) -> Launch:
        launch = super()._prepare(bind)
        text = self.config_path.read_text().replace("enable_model_api=false", "enable_model_api=true")
        text = text.replace(f"management_address=http://{HOST}:", f"management_address=http://{bind}:")
        self.config_path.write_text(text)
        return launch

    def public_ports(self) -> list[int]:
        return [*super().public_ports(), self.ports.management]


def _versioned_mar(layout: ArtifactLayout, store: Path) -> Path:
    """A copy of the model's .mar whose manifest says ``NEW_VERSION``, in the server's model store."""
    target = store / f"{layout.name}-v{NEW_VERSION}.mar"
    with zipfile.ZipFile(mar_of(layout)) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == MANIFEST:
                manifest = json.loads(data)
                manifest["model"]["modelVersion"] = NEW_VERSION
                data = json.dumps(manifest).encode()
            new.writestr(item, data)
    return target


def roll_out(server: TorchServe, layout: ArtifactLayout) -> str:
    """Register version ``NEW_VERSION`` of ``layout`` (synchronously, one worker), then make it default."""
    mar = _versioned_mar(layout, server.workdir / "model-store")
    base = f"http://127.0.0.1:{server.ports.management}"
    steps = [
        ("POST", f"{base}/models", {"url": mar.name, "initial_workers": 1, "synchronous": "true"}),
        ("PUT", f"{base}/models/{layout.name}/{NEW_VERSION}/set-default", None),
    ]
    for method, url, params in steps:
        reply = requests.request(method, url, params=params, timeout=API_TIMEOUT_S)
        if reply.status_code != 200:
            why = reply.text[:200]
            raise ServeoffError(f"TorchServe's management API answered {reply.status_code}: {why}")
    return NEW_VERSION


def serving_pids(server: TorchServe, layout: ArtifactLayout) -> list[int]:
    """The PIDs of the workers of the version TorchServe answers with now (its default): after a rollout
    the old version's workers still run, and killing one of them would fail nothing."""
    described = _default_version(server, layout)
    try:
        return [int(worker["pid"]) for worker in described["workers"] if worker.get("pid")]
    except (KeyError, TypeError, ValueError):
        return []


def serving_version(server: TorchServe, layout: ArtifactLayout) -> str:
    """The version TorchServe answers the model's predictions with now: its default (its replies do not
    name the version that answered them)."""
    return str(_default_version(server, layout).get("modelVersion", "unknown"))


def _default_version(server: TorchServe, layout: ArtifactLayout) -> dict:
    """The management API's description of the model's default version (``{}`` when it does not answer
    with one)."""
    try:
        reply = requests.get(f"http://127.0.0.1:{server.ports.management}/models/{layout.name}", timeout=2)
        described = reply.json()[0]
    except (requests.RequestException, ValueError, KeyError, IndexError):
        return {}
    return described if isinstance(described, dict) else {}
