"""KServe's configuration, from the one fair ``ServerConfig``: the JSON file ``serve.py`` reads.

How each setting maps onto KServe (``None`` keeps KServe's or the runtime's default):

- ``instances`` -> copies of each model, each computing in a thread of its own: requests to one model run
  that many at a time (KServe's ``--workers`` would fork REST-only processes, without gRPC).
- ``threads`` -> ``torch.set_num_threads`` (TorchScript) or ONNX Runtime's ``intra_op_num_threads`` per
  copy; ``inter_op_threads`` -> ``torch.set_num_interop_threads`` or ``inter_op_num_threads``.
- ``max_batch_size``: KServe has no server-side dynamic batching for custom models, so a setting over 1
  is refused (``check_batching``) rather than silently not honoured; ``batch_timeout_ms`` and
  ``queue_size`` then mean nothing to it.
- ``cpus`` -> the CPU affinity of the process (the launcher pins it).

Ports from ``port_base``: REST (V1, v2 and the Prometheus ``/metrics``) on it, gRPC on the next.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout, require_manifest
from serveoff.serving import runtimes
from serveoff.serving.resources import ServerConfig

PORT_COUNT = 2
HOST = "127.0.0.1"
METRICS_PATH = "/metrics"
SCRIPT = Path(__file__).with_name("serve.py")
CONFIG_FILE = "kserve.json"


@dataclass(frozen=True)
class Ports:
    """KServe's two ports."""

    rest: int
    grpc: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(rest=base, grpc=base + 1)


@dataclass(frozen=True)
class Runtime:
    """What one KServe server runs its models with: ``serve.py``'s runner and the artifact it loads."""

    name: str  # serve.py's RUNNERS key: "torchscript" or "onnx"
    package: str  # the distribution whose version is the runtime's: "torch" or "onnxruntime"
    inprocess: str | None  # the in-process runtime whose artifact it serves (None: the TorchScript file)

    def artifact(self, layout: ArtifactLayout) -> Path:
        """The model file this runtime serves; one clear line when the build lacks it."""
        if self.inprocess is None:
            path = layout.torchscript
        else:
            why = runtimes.built(self.inprocess, require_manifest(layout))
            if why is not None:
                raise ServeoffError(
                    f"{layout.name} has no {self.inprocess} export for KServe to serve ({why}); rebuild it "
                    "with `serveoff build`, or serve it with --server kserve"
                )
            path = runtimes.get(self.inprocess).artifact(layout)
        if path is None or not path.is_file():
            raise ServeoffError(f"{path} is missing; build model {layout.name} with `serveoff build`")
        return path


def check_batching(config: ServerConfig) -> None:
    """One clear line for a batching setting KServe cannot honour."""
    if config.batching:
        raise ServeoffError(
            f"--max-batch-size {config.max_batch_size}: KServe has no server-side batching for custom "
            "models; measure it with --max-batch-size 1, or leave it out by naming the other servers with "
            "--server"
        )


def model_entries(models: list[ArtifactLayout], runtime: Runtime) -> list[dict]:
    """One entry per model for ``serve.py``: its name, file, wire input and output name."""
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ServeoffError(f"KServe got the same model twice: {', '.join(names)}")
    entries = []
    for layout in models:
        manifest = require_manifest(layout)
        entries.append({
            "name": layout.name, "path": str(runtime.artifact(layout).resolve()),
            "dtype": manifest["input"]["dtype"], "shape": manifest["input"]["shape"],
            "output": manifest["output"]["name"],
        })  # fmt: skip
    return entries


def write_config(models: list[ArtifactLayout], config: ServerConfig, runtime: Runtime, ports: Ports,
                 workdir: Path, bind: str) -> tuple[Path, Path]:  # fmt: skip
    """Write ``kserve.json`` and a copy of ``serve.py`` into ``workdir``; returns both paths.

    The copy lets a container (which mounts ``workdir``) run exactly the program a native start runs.
    """
    if not models:
        raise ServeoffError("no models to serve; name at least one built model")
    check_batching(config)
    doc = {
        "host": bind, "http_port": ports.rest, "grpc_port": ports.grpc, "runtime": runtime.name,
        "instances": config.instances, "threads": config.threads,
        "inter_op_threads": config.inter_op_threads, "models": model_entries(models, runtime),
    }  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CONFIG_FILE
    path.write_text(json.dumps(doc, indent=2) + "\n")
    script = workdir / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    return path, script
