"""What `serveoff probe` does to TF Serving: a version rollout by its file-system source.

TF Serving serves the highest version under each model's base path (the default, latest-version policy)
and polls the base path every ``--file_system_poll_wait_seconds``. The probe serves the model from a base
path of its own in the server's workdir (a link to the built version), polled every second, and rolls out
by adding version 2 there; gRPC replies name the version that answered.
"""

from __future__ import annotations

import time
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.loadtest.bench import input_batch
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import Launch
from serveoff.serving.tfserving.package import model_base_path
from serveoff.serving.tfserving.protos import PredictResponse
from serveoff.serving.tfserving.server import TFServing

POLL = "--file_system_poll_wait_seconds="
NEW_VERSION = "2"
HOW = ("a new version directory under the base path, loaded by the file-system poll (every 1 s); the "
       "version that answered is named by a gRPC reply after each slice")
LOAD_TIMEOUT_S = 60.0


class ProbedServer(TFServing):
    """TF Serving polling base paths of its own (``workdir/versions/<model>``) every second."""

    def write_launch(self) -> Launch:
        launch = super().write_launch()
        config = self.workdir / "models.config"
        text = config.read_text()
        for model in self.models:
            original = model_base_path(model).resolve()
            own = _base_path(self, model)
            own.mkdir(parents=True, exist_ok=True)
            for version in original.iterdir():
                link = own / version.name
                if version.name.isdigit() and not link.exists():
                    link.symlink_to(version, target_is_directory=True)
            text = text.replace(f'"{original}"', f'"{own}"')
        config.write_text(text)
        argv = [f"{POLL}1" if arg.startswith(POLL) else arg for arg in launch.argv]
        return Launch(argv, launch.env)


def _base_path(server: TFServing, model: ArtifactLayout) -> Path:
    return server.workdir / "versions" / model.name


def roll_out(server: TFServing, layout: ArtifactLayout) -> str:
    """Add version ``NEW_VERSION`` (the same SavedModel) to the model's base path; the poll loads it."""
    base = _base_path(server, layout)
    current = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not current:
        raise ServeoffError(f"{base} holds no version of {layout.name} to roll out from")
    (base / NEW_VERSION).symlink_to(current[-1].resolve(), target_is_directory=True)
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while serving_version(server, layout) != NEW_VERSION:  # returns once the new version answers
        if time.monotonic() > deadline:
            raise ServeoffError(f"TF Serving did not serve version {NEW_VERSION} within {LOAD_TIMEOUT_S:g} s")
        time.sleep(0.2)
    return NEW_VERSION


def serving_version(server: TFServing, layout: ArtifactLayout) -> str:
    """The version that answers a gRPC Predict now (TF Serving names it in every reply)."""
    from serveoff.loadtest.probes.context import send_once

    wire = server.wire_request(server.endpoints, layout, "grpc", input_batch(layout, 1))
    reply = send_once(wire, 2.0)
    if not reply.ok:
        return f"none ({reply.status})"
    return str(PredictResponse.FromString(reply.body).model_spec.version.value)
