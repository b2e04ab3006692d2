"""Launch TF Serving (``tensorflow_model_server``) natively on the models' SavedModels.

Real TF Serving binds its gRPC and REST ports on 0.0.0.0; the address is hard-coded
(tensorflow/serving#1969), so a native server is reachable from the network while it runs, unlike every
other server serveoff starts on 127.0.0.1. Each start logs a warning saying so; ``serveoff bench --docker``
publishes the container's ports on 127.0.0.1 only. Clients always connect to 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import requests

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.models.spec import InputSpec
from serveoff.serving.base import (
    Endpoints,
    Launch,
    RestGrpcServer,
    WireRequest,
    check_protocol,
)
from serveoff.serving.process import (
    ManagedProcess,
    ServerError,
    diagnosis,
    ensure_port_free,
    wait_until_ready,
)
from serveoff.serving.resources import validate
from serveoff.serving.tfserving import package as packaging
from serveoff.serving.tfserving.client import WireSpec, decode_reply, wire_request
from serveoff.serving.tfserving.config import METRICS_PATH, PORT_COUNT, Ports, flags, write_config_files

BINARY = "tensorflow_model_server"
INSTALL_HINT = (
    "install it from TF Serving's apt repository (package tensorflow-model-server), build it from source, "
    "or run it from the official image tensorflow/serving:2.21.0 (docker compose build tfserving, then "
    "serveoff bench --docker)"
)
BIND_WARNING = (
    "tensorflow_model_server binds its gRPC and REST ports on 0.0.0.0 (hard-coded, tensorflow/serving#1969): "
    "ports {grpc} and {rest} are reachable from the network while it runs; "
    "use --docker to publish them on 127.0.0.1 only"
)
# Log lines after which a load can no longer succeed: TF Serving would retry for minutes before exiting.
_LOAD_FAILURE = re.compile(r".*(?:Loading servable: .* failed: |cannot be loaded: |Failed to start server).*")
_STATUS_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


class TFServing(RestGrpcServer):
    """TF Serving on each model's ``tfserving/<name>/<version>`` SavedModel, under one ``ServerConfig``."""

    name = "tfserving"
    title = "TF Serving"
    framework = "tf"
    port_count = PORT_COUNT
    port_layout = Ports.from_base
    metrics_path = METRICS_PATH
    default_port_base = 8500  # gRPC 8500, REST 8501: TF Serving's own defaults
    # The official image of the TF release that built the SavedModels (serving/tfserving/Dockerfile).
    default_image = "serveoff-tfserving:2.21.0"
    packaging_code: ClassVar[tuple[Path, ...]] = (Path(packaging.__file__),)
    probe_module: ClassVar[str | None] = "serveoff.serving.tfserving.probe"

    @classmethod
    def package(cls, layout: ArtifactLayout, input_spec: InputSpec) -> dict[str, Path]:
        """The model's base path, whose version 1 is the build's SavedModel."""
        return {"tfserving": packaging.link_savedmodel(layout)}

    @classmethod
    def check_installed(cls) -> None:
        find_binary()

    def write_launch(self) -> Launch:
        """The configuration files, and TF Serving's binary on PATH with its flags (it binds every
        address: of the container, in one)."""
        if not self.models:
            raise ServeoffError("no models to serve; name at least one built model")
        files = write_config_files(self.models, self.config, self.workdir)
        return Launch([BINARY, *flags(self.config, files, self.ports)], {})

    def answering(self) -> bool:
        return self._models_available()

    @classmethod
    def container_versions(cls, run: Callable[[list[str]], str]) -> dict[str, str]:
        return parse_versions(run([BINARY, "--version"]))

    def start(self, timeout: float = 180.0) -> None:
        validate(self.config)
        launch = self.write_launch()  # checks there are models; writes the configuration files
        for model in self.models:
            wire_spec(model)
        binary = find_binary()
        ensure_port_free(self.ports.grpc, "TF Serving gRPC")
        ensure_port_free(self.ports.rest, "TF Serving REST")
        log.warning(BIND_WARNING.format(grpc=self.ports.grpc, rest=self.ports.rest))
        self._proc = ManagedProcess([binary, *launch.argv[1:]], self.log_path, cpus=self.config.cpus)
        self._proc.start()
        try:
            wait_until_ready(
                self._models_available, self._proc, what="TF Serving", timeout=timeout, fatal=_load_failure
            )
        except BaseException:
            self._proc.stop()
            raise

    @classmethod
    def wire_request(
        cls, endpoints: Endpoints, layout: ArtifactLayout, protocol: str, batch: np.ndarray
    ) -> WireRequest:
        check_protocol(protocol)
        return wire_request(endpoints.rest, endpoints.grpc, layout.name, wire_spec(layout), protocol, batch)

    @classmethod
    def decode_reply(cls, layout: ArtifactLayout, protocol: str, body: bytes) -> np.ndarray:
        check_protocol(protocol)
        return decode_reply(protocol, body, wire_spec(layout))

    def versions(self) -> dict[str, str]:
        """``tensorflow_model_server --version``'s lines (server and TensorFlow library), verbatim."""
        binary = find_binary()
        try:
            done = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=60, check=True
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise ServeoffError(f"cannot read the version of {binary}: {err}") from None
        return parse_versions(done.stdout)

    def diagnose(self, problem: str, lost: bool = False) -> ServerError:
        """A ``ServerError`` for a failed request: whether the server died (with its log tail) or runs."""
        return diagnosis(self._proc, BINARY, problem, lost)

    def _models_available(self) -> bool:
        """Whether every model has a version in state AVAILABLE, per ``GET /v1/models/<name>``."""
        for model in self.models:
            try:
                response = requests.get(
                    f"{self.endpoints.rest}/v1/models/{model.name}", timeout=_STATUS_TIMEOUT_S
                )
                states = [v.get("state") for v in response.json().get("model_version_status", [])]
            except (requests.RequestException, ValueError, AttributeError):
                return False
            if "AVAILABLE" not in states:
                return False
        return True


def find_binary() -> str:
    """The path of ``tensorflow_model_server`` on PATH, or one clear line on how to get it."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise ServeoffError(f"{BINARY} (TF Serving) is not on PATH; {INSTALL_HINT}")
    return binary


def parse_versions(output: str) -> dict[str, str]:
    """``tensorflow_model_server --version``'s lines (server and TensorFlow library), verbatim."""
    pairs = (line.partition(":") for line in output.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs} or {BINARY: output.strip()}


def wire_spec(model: ArtifactLayout) -> WireSpec:
    """The input and output names of a built model, from its manifest."""
    manifest = require_manifest(model)
    return WireSpec(input_name=manifest["input"]["name"], output_name=manifest["output"]["name"])


def _load_failure(log_tail: str) -> str | None:
    match = _LOAD_FAILURE.search(log_tail)
    return match.group(0).strip() if match else None
