"""One fair resource setting for every server: CPUs, threads, model instances and batching policy.

Each server maps it onto its own knobs (see the server folders), so a fair comparison is one
setting, not two hand-tuned ones.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from serveoff.errors import ServeoffError

PRESETS = ("matched", "out-of-the-box")


@dataclass(frozen=True)
class ServerConfig:
    """The resources and batching policy a server gets.

    ``None`` means "the server's own default" and is used only by the out-of-the-box preset.
    """

    preset: str
    cpus: tuple[int, ...] | None  # the CPU set the server's processes are pinned to
    instances: int | None  # model instances executing at once: TorchServe workers, TF Serving batch threads
    threads: int | None  # intra-op threads per instance
    inter_op_threads: int | None
    max_batch_size: int  # 1: no server-side batching
    batch_timeout_ms: int  # how long a partial batch waits for more requests
    queue_size: int | None  # requests (TorchServe) or batches (TF Serving) that may wait

    @property
    def batching(self) -> bool:
        """Whether the server forms batches from concurrent requests."""
        return self.max_batch_size > 1

    def to_json(self) -> dict:
        """Plain data for manifests and reports."""
        data = asdict(self)
        data["cpus"] = list(self.cpus) if self.cpus else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> ServerConfig:
        """The config ``to_json`` wrote."""
        cpus = data.get("cpus")
        return cls(**{**data, "cpus": tuple(cpus) if cpus else None})


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on."""
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_cpus(text: str, available: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """A CPU list like ``0-3,6`` as sorted CPU numbers; a clear error when malformed or not ``available``
    (default: the CPUs this process may run on)."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ServeoffError(f"CPU list {text!r} is malformed; write it like 0-3,6") from None
    have_cpus = available or available_cpus()
    missing = cpus - set(have_cpus)
    if not cpus or missing:
        have = ",".join(map(str, have_cpus))
        raise ServeoffError(
            f"CPU list {text!r} names CPUs this machine lacks ({sorted(missing)}); it has {have}"
        )
    return tuple(sorted(cpus))


def server_config(
    preset: str = "matched",
    *,
    cpus: tuple[int, ...] | None = None,
    instances: int | None = None,
    threads: int | None = None,
    max_batch_size: int | None = None,
    batch_timeout_ms: int | None = None,
    available: tuple[int, ...] | None = None,
) -> ServerConfig:
    """The named preset, with any value given here overriding it.

    - ``matched``: both servers pinned to the same CPUs, one model instance using every pinned CPU
      as intra-op threads, one inter-op thread, and the same batching policy (off unless asked).
    - ``out-of-the-box``: each server's own defaults, unpinned, no server-side batching.

    ``available``: the CPUs the servers may use (default: those of this process; in Docker: the engine's).
    """
    if preset not in PRESETS:
        raise ServeoffError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if preset == "matched":
        pinned = cpus or available or available_cpus()
        base = ServerConfig(preset, pinned, 1, len(pinned), 1, 1, 0, 100)
    else:
        base = ServerConfig(preset, cpus, None, None, None, 1, 0, None)
    overrides = {
        "instances": instances,
        "threads": threads,
        "max_batch_size": max_batch_size,
        "batch_timeout_ms": batch_timeout_ms,
    }
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    validate(config, available)
    return config


def validate(config: ServerConfig, available: tuple[int, ...] | None = None) -> None:
    """One clear line for a value no server could honour (CPUs: not ``available``, default this process's)."""
    for field in ("instances", "threads", "inter_op_threads", "queue_size"):
        value = getattr(config, field)
        if value is not None and value < 1:
            raise ServeoffError(f"{field.replace('_', ' ')} must be at least 1, got {value}")
    if config.max_batch_size < 1:
        raise ServeoffError(f"max batch size must be at least 1, got {config.max_batch_size}")
    if config.batch_timeout_ms < 0:
        raise ServeoffError(f"batch timeout must be 0 ms or more, got {config.batch_timeout_ms}")
    if config.cpus is not None:
        have = available or available_cpus()
        missing = set(config.cpus) - set(have)
        if missing:
            raise ServeoffError(f"CPUs {sorted(missing)} are not available here; there are {list(have)}")
