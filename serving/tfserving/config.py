"""TF Serving's configuration files and command line, from the one fair ``ServerConfig``.

How each setting maps onto TF Serving (``None`` keeps TF Serving's default: the flag or field is left out):

- ``instances`` -> batching ``num_batch_threads``: batches executing at once. Without batching TF Serving
  runs every request on its request thread against one shared session, so there is no instance knob.
- ``threads`` -> ``--tensorflow_intra_op_parallelism`` = instances x threads: TF Serving has one intra-op
  pool shared by every batch thread, so it gets the total that TorchServe's workers x threads get.
- ``inter_op_threads`` -> ``--tensorflow_inter_op_parallelism``.
- ``max_batch_size``, ``batch_timeout_ms``, ``queue_size`` -> the batching parameters file's
  ``max_batch_size``, ``batch_timeout_micros`` and ``max_enqueued_batches`` (TF Serving queues batches,
  not requests); ``--enable_batching`` and the file only when ``max_batch_size`` > 1.
- ``cpus`` -> the CPU affinity of the process (the launcher pins it).

Prometheus metrics are served on the REST port. Ports from ``port_base``: gRPC on it, REST on the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.message import Message
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.resources import ServerConfig
from serveoff.serving.tfserving.package import model_base_path
from serveoff.serving.tfserving.protos import BatchingParameters, MonitoringConfig

PORT_COUNT = 2
METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class Ports:
    """TF Serving's two ports."""

    grpc: int
    rest: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(grpc=base, rest=base + 1)


@dataclass(frozen=True)
class ConfigFiles:
    """The text-proto files TF Serving reads; ``batching`` is ``None`` when batching is off."""

    models: Path
    monitoring: Path
    batching: Path | None


def model_server_config(models: list[ArtifactLayout]) -> ModelServerConfig:
    """One ``config`` entry per model: its name, its base path (versions below it) and the TF platform."""
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ServeoffError(f"models {duplicates} are named more than once; serve each model once")
    config = ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = str(model_base_path(model).resolve())
        entry.model_platform = "tensorflow"
    return config


def batching_parameters(config: ServerConfig) -> BatchingParameters:
    """The batching policy; fields left unset keep TF Serving's defaults."""
    params = BatchingParameters()
    params.max_batch_size.value = config.max_batch_size
    params.batch_timeout_micros.value = config.batch_timeout_ms * 1000
    if config.instances is not None:
        params.num_batch_threads.value = config.instances
    if config.queue_size is not None:
        params.max_enqueued_batches.value = config.queue_size
    return params


def monitoring_config() -> MonitoringConfig:
    """Prometheus metrics at ``METRICS_PATH`` on the REST port."""
    config = MonitoringConfig()
    config.prometheus_config.enable = True
    config.prometheus_config.path = METRICS_PATH
    return config


def write_config_files(models: list[ArtifactLayout], config: ServerConfig, workdir: Path) -> ConfigFiles:
    """Write the files into ``workdir`` (replacing earlier ones) and return their paths."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = ConfigFiles(
        models=workdir / "models.config",
        monitoring=workdir / "monitoring.config",
        batching=workdir / "batching.config" if config.batching else None,
    )
    _write(files.models, model_server_config(models))
    _write(files.monitoring, monitoring_config())
    if files.batching:
        _write(files.batching, batching_parameters(config))
    return files


def intra_op_threads(config: ServerConfig) -> int | None:
    """Intra-op threads of the one shared pool: every instance's threads."""
    return None if config.threads is None else config.threads * (config.instances or 1)


def flags(config: ServerConfig, files: ConfigFiles, ports: Ports) -> list[str]:
    """``tensorflow_model_server``'s arguments, all documented flags in its ``--flag=value`` form."""
    args = [
        f"--port={ports.grpc}",
        f"--rest_api_port={ports.rest}",
        f"--model_config_file={files.models}",
        f"--monitoring_config_file={files.monitoring}",
    ]
    if files.batching:
        args += ["--enable_batching=true", f"--batching_parameters_file={files.batching}"]
    intra = intra_op_threads(config)
    if intra is not None:
        args.append(f"--tensorflow_intra_op_parallelism={intra}")
    if config.inter_op_threads is not None:
        args.append(f"--tensorflow_inter_op_parallelism={config.inter_op_threads}")
    args.append(
        "--file_system_poll_wait_seconds=0"
    )  # load the versions present once; no polling while measured
    return args


def _write(path: Path, message: Message) -> None:
    path.write_text(text_format.MessageToString(message))
