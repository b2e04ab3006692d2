"""One fair resource setting for every server: CPUs, threads, model instances and batching policy.

Each server maps it onto its own knobs (see the server folders), so a fair comparison is one
setting, not two hand-tuned ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

from serveoff.errors import ServeoffError

PRESETS = ("matched", "out-of-the-box")
MOST = {  # the largest value of each setting, and why: a typo must not start thousands of processes
    "instances": (256, "each TorchServe worker is a process holding its own copy of the model"),
    "threads": (1024, "more threads than any machine's CPUs only contend"),
    "max_batch_size": (1024, "as --batch-size: larger batches are built in memory whole"),
    "batch_timeout_ms": (60_000, "a partial batch waiting over a minute measures the wait, not the server"),
}


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


@dataclass(frozen=True)
class LoadgenCpus:
    """The load generator's CPU set, and a one-line warning when it must share the servers' CPUs."""

    cpus: tuple[int, ...]
    warning: str | None = None
    # the servers' CPUs this process may also use (None: none, e.g. in a container of its own, or unpinned)
    server_side: tuple[int, ...] | None = None


def loadgen_cpus(
    server_cpus: tuple[int, ...] | None,
    requested: tuple[int, ...] | None = None,
    available: tuple[int, ...] | None = None,
) -> LoadgenCpus:
    """The CPUs the load generator runs on: ``requested``, else every ``available`` CPU (default: this
    process's) not given to the servers; all of them, with a warning, when the servers have every CPU."""
    have = available or available_cpus()
    servers = set(server_cpus or ())
    reach = tuple(c for c in have if c in servers) or None
    if requested:
        validate_cpus(requested, have, "--loadgen-cpus")
        shared = sorted(servers & set(requested))
        warning = (f"the load generator shares CPUs {shared} with the servers, so it takes CPU time from "
                   "them; give --loadgen-cpus CPUs the servers do not have") if shared else None  # fmt: skip
        return LoadgenCpus(tuple(sorted(requested)), warning, reach)
    apart = tuple(c for c in have if c not in servers)
    if apart:
        return LoadgenCpus(apart, None, reach)
    why = "the servers are not pinned" if not servers else f"the servers have every CPU ({sorted(servers)})"
    return LoadgenCpus(
        tuple(have),
        f"the load generator shares the servers' CPUs ({why}), so it takes CPU time from them; leave it "
        "CPUs of its own (--cpus for the servers, --loadgen-cpus for the generator)",
        reach,
    )


def validate_cpus(cpus: tuple[int, ...], have: tuple[int, ...], what: str) -> None:
    """One clear line when ``cpus`` names a CPU not in ``have``."""
    missing = sorted(set(cpus) - set(have))
    if missing:
        raise ServeoffError(f"{what}: CPUs {missing} are not available here; there are {list(have)}")


def thread_affinities(pid: int | None = None) -> dict[int, tuple[int, ...]]:
    """Each thread of process ``pid`` (default: this one) and the CPUs it may run on, as the kernel says."""
    base = f"/proc/{pid or os.getpid()}/task"
    found = {}
    for name in os.listdir(base):
        try:
            found[int(name)] = tuple(sorted(os.sched_getaffinity(int(name))))
        except (ProcessLookupError, PermissionError):
            continue  # the thread ended while we looked
    return found


def pin_process(cpus: tuple[int, ...]) -> tuple[int, ...]:
    """Pin every thread of this process (and so whatever it starts later) to ``cpus``; returns the CPUs
    the process's main thread may run on afterwards, read back from the kernel."""
    for tid in thread_affinities():
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:
            continue
    return tuple(sorted(os.sched_getaffinity(os.getpid())))


@contextmanager
def pinned(cpus: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """This process pinned to ``cpus`` for the block (the CPUs read back), then as it was before."""
    before = thread_affinities()
    try:
        yield pin_process(cpus)
    finally:
        for tid, mask in before.items():
            try:
                os.sched_setaffinity(tid, mask)
            except ProcessLookupError:
                continue


def parse_cpus(text: str, available: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """A CPU list like ``0-3,6`` as sorted CPU numbers; a clear error when malformed or not ``available``
    (default: the CPUs this process may run on)."""
    have = set(available or available_cpus())
    top = max(have)
    cpus: set[int] = set()
    missing: list[str] = []
    for part in text.split(","):
        first, last = _cpu_range(part, text)
        cpus.update(c for c in range(first, min(last, top) + 1) if c in have)
        missing += [str(c) for c in range(first, min(last, top) + 1) if c not in have]
        if last > top:  # described, not enumerated: 0-99999999 must not build a set of that size
            low = max(first, top + 1)
            missing.append(f"{low}-{last}" if last > low else str(low))
    if missing:
        have_list = ",".join(map(str, sorted(have)))
        raise ServeoffError(
            f"CPU list {text!r} names CPUs this machine lacks ({','.join(missing)}); it has {have_list}"
        )
    return tuple(sorted(cpus))


def _cpu_range(part: str, text: str) -> tuple[int, int]:
    """``3`` or ``0-3`` as its first and last CPU; one clear line when malformed or backwards."""
    first, _, last = part.strip().partition("-")
    try:
        low, high = int(first), int(last or first)
    except ValueError:
        raise ServeoffError(f"CPU list {text!r} is malformed; write it like 0-3,6") from None
    if high < low:
        raise ServeoffError(
            f"CPU list {text!r} has a range that runs backwards ({part.strip()}); write it low-high, like "
            f"{high}-{low}"
        )
    return low, high


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
    for field, (most, why) in MOST.items():
        value = getattr(config, field)
        if value is not None and value > most:
            flag = "--" + field.replace("_", "-")
            raise ServeoffError(f"{flag} {value} is too high: at most {most:,} ({why})")
    if config.cpus is not None:
        have = available or available_cpus()
        missing = set(config.cpus) - set(have)
        if missing:
            raise ServeoffError(f"CPUs {sorted(missing)} are not available here; there are {list(have)}")


def check_batch_fits(batch_size: int, config: ServerConfig) -> None:
    """Requests of ``batch_size`` inputs must fit the servers' batches when they batch: TF Serving rejects a
    larger request (INVALID_ARGUMENT), so serveoff refuses the setting up front, for every server alike."""
    if config.batching and batch_size > config.max_batch_size:
        most = config.max_batch_size
        raise ServeoffError(
            f"--batch-size {batch_size} is larger than the servers' --max-batch-size {most}: TF Serving "
            f'rejects such requests ("Task size {batch_size} is larger than maximum input batch size '
            f'{most}"); send --batch-size {most} or less, or give the servers --max-batch-size {batch_size}'
        )
