"""TorchServe's ``config.properties`` and worker environment, from one ``ServerConfig``.

How each ``ServerConfig`` field maps onto TorchServe (``None``, the out-of-the-box preset, leaves
TorchServe's own default, so no line is written for it):

- ``cpus`` -> every process (wrapper, Java frontend, Python workers) is pinned to these CPUs by
  ``ManagedProcess``; ``number_of_netty_threads`` (frontend I/O threads) and ``netty_client_threads``
  (frontend-to-worker threads) = the number of pinned CPUs.
- ``instances`` -> ``default_workers_per_model`` and per model ``minWorkers`` = ``maxWorkers``
  (Python worker processes, each running one copy of the model).
- ``threads`` -> ``OMP_NUM_THREADS`` and ``SERVEOFF_TORCH_THREADS`` in the workers' environment;
  ``handler.py`` calls ``torch.set_num_threads`` with it.
- ``inter_op_threads`` -> ``SERVEOFF_TORCH_INTEROP_THREADS``; ``handler.py`` calls
  ``torch.set_num_interop_threads`` with it.
- ``max_batch_size`` -> per model ``batchSize``; ``batch_timeout_ms`` -> per model ``maxBatchDelay``,
  at least 1 ms: TorchServe replaces 0 by its 100 ms default (without batching no request waits anyway).
- ``queue_size`` -> ``job_queue_size`` (requests that may wait per model).

Thread variables inherited from serveoff's own environment are dropped, so only the ``ServerConfig``
sets them (out of the box: torch's defaults).

Always set, whatever the preset: every address on 127.0.0.1 (in a container: the management
addresses; see ``properties``), Prometheus metrics, token authorization and the model-management
API off, a per-model ``responseTimeout``, request and response size limits large enough for the
benchmark's payloads (TF Serving has none that low), and the host-metrics collector off (it starts
a Python process on the server's CPUs every minute, noise TF Serving does not have).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.serving.resources import ServerConfig

HOST = "127.0.0.1"
PORT_COUNT = 5
RESPONSE_TIMEOUT_S = 120
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MIN_BATCH_DELAY_MS = 1  # TorchServe reads a maxBatchDelay of 0 as "unset" and waits its default 100 ms
THREADS_ENV = "SERVEOFF_TORCH_THREADS"  # the names handler.py reads (it imports only torch and numpy)
INTEROP_THREADS_ENV = "SERVEOFF_TORCH_INTEROP_THREADS"
WORKER_ENV_KEYS = ("OMP_NUM_THREADS", THREADS_ENV, INTEROP_THREADS_ENV)  # inherited values are dropped


@dataclass(frozen=True)
class Ports:
    """TorchServe's five ports, consecutive from ``base``."""

    rest: int
    management: int
    metrics: int
    grpc: int
    grpc_management: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(*range(base, base + PORT_COUNT))

    def public(self) -> list[int]:
        """The ports a container publishes: inference and metrics, never management."""
        return [self.rest, self.metrics, self.grpc]

    def named(self) -> dict[str, int]:
        """Each port with what it serves, for clear errors."""
        return {
            "TorchServe REST inference": self.rest,
            "TorchServe REST management": self.management,
            "TorchServe metrics": self.metrics,
            "TorchServe gRPC inference": self.grpc,
            "TorchServe gRPC management": self.grpc_management,
        }


def mar_version(mar: Path) -> str:
    """The model version recorded in a .mar's manifest (TorchServe keys per-model settings by it)."""
    try:
        with zipfile.ZipFile(mar) as archive:
            return json.loads(archive.read("MAR-INF/MANIFEST.json"))["model"].get("modelVersion", "1.0")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ServeoffError(
            f"{mar} is not a readable TorchServe archive ({err}); rebuild it with `serveoff build`"
        ) from None


def model_settings(config: ServerConfig, mar: Path) -> dict:
    """The ``models`` entry of one model: its version's batching, workers and response timeout."""
    settings: dict = {
        "defaultVersion": True,
        "marName": mar.name,
        "batchSize": config.max_batch_size,
        "maxBatchDelay": max(config.batch_timeout_ms, MIN_BATCH_DELAY_MS),
        "responseTimeout": RESPONSE_TIMEOUT_S,
    }
    if config.instances is not None:
        settings |= {"minWorkers": config.instances, "maxWorkers": config.instances}
    return {mar_version(mar): settings}


def properties(
    config: ServerConfig, ports: Ports, model_store: Path, mars: dict[str, Path], bind: str = HOST
) -> dict[str, str]:
    """Every ``config.properties`` entry for serving ``mars`` (model name -> archive in ``model_store``).

    ``bind`` is the address of the inference, metrics and gRPC inference ports: 127.0.0.1 natively,
    0.0.0.0 inside a container (whose ports are published on the host's 127.0.0.1 only). The
    management APIs always stay on 127.0.0.1.
    """
    props = {
        "inference_address": f"http://{bind}:{ports.rest}",
        "management_address": f"http://{HOST}:{ports.management}",
        "metrics_address": f"http://{bind}:{ports.metrics}",
        "grpc_inference_address": bind,
        "grpc_inference_port": str(ports.grpc),
        "grpc_management_address": HOST,
        "grpc_management_port": str(ports.grpc_management),
        "metrics_mode": "prometheus",
        "disable_token_authorization": "true",
        "enable_model_api": "false",
        "disable_system_metrics": "true",
        "max_request_size": str(MAX_MESSAGE_BYTES),
        "max_response_size": str(MAX_MESSAGE_BYTES),
        "model_store": str(model_store),
        "load_models": ",".join(f"{name}={mar.name}" for name, mar in mars.items()),
        "models": json.dumps({name: model_settings(config, mar) for name, mar in mars.items()}),
    }
    optional = {
        "default_workers_per_model": config.instances,
        "number_of_netty_threads": len(config.cpus) if config.cpus else None,
        "netty_client_threads": len(config.cpus) if config.cpus else None,
        "job_queue_size": config.queue_size,
    }
    props |= {key: str(value) for key, value in optional.items() if value is not None}
    return props


def render(props: dict[str, str]) -> str:
    """Java properties text (values here never need escaping: no newlines, backslashes or leading blanks)."""
    return "".join(f"{key}={value}\n" for key, value in props.items())


def worker_env(config: ServerConfig) -> dict[str, str]:
    """Environment variables that carry the thread settings to the Python workers."""
    env = {}
    if config.threads is not None:
        env |= {"OMP_NUM_THREADS": str(config.threads), THREADS_ENV: str(config.threads)}
    if config.inter_op_threads is not None:
        env[INTEROP_THREADS_ENV] = str(config.inter_op_threads)
    return env
