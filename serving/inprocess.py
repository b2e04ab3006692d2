"""The in-process baselines: the same trained weights run in this process, the physical limit of serving.

Each runtime (``torch:inprocess``, ``torch:compiled``, ``tf:xla``, ...) lives in ``serving/runtimes/``.

The model runs on the servers' CPUs, though this process (the load generator's) runs on others: every
thread that executes it is pinned to the config's CPU set. The main thread (the event loop's) loads the
model and makes the first calls with itself pinned to that set for the call, then returns to its own
CPUs, so the thread pools a framework starts while loading (TensorFlow's, ONNX Runtime's, torch.compile's
compiler processes) inherit the set; a load point's pool thread pins itself for good on its first call.
Threads a framework starts later from a pinned thread (PyTorch's OpenMP intra-op threads) inherit its
CPUs from it, as Linux does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving import runtimes
from serveoff.serving.resources import ServerConfig


class InProcessClient:
    """Calls an in-process runner, as a server would be called, on ``cpus`` (``None``: anywhere)."""

    def __init__(self, load: Callable[[], runtimes.Runner], cpus: tuple[int, ...] | None = None) -> None:
        self.cpus = cpus
        self._pinned: set[int] = set()  # native ids of the pool threads pinned for good
        self._during_calls: set[int] = set()  # the main thread's CPUs while it ran the model, read back
        self.runner = self._pinned_call(load)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._pinned_call(self.runner.predict, batch)

    def _pinned_call(self, call: Callable, *args: object) -> Any:
        tid = threading.get_native_id()
        if not self.cpus or tid in self._pinned:
            return call(*args)
        if tid != os.getpid():  # a load point's pool thread: it runs nothing else, so it stays pinned
            _pin(self.cpus)
            self._pinned.add(tid)
            return call(*args)
        before = os.sched_getaffinity(0)  # the main thread, the event loop's: pinned for this call only
        _pin(self.cpus)
        try:
            self._during_calls |= os.sched_getaffinity(0)
            return call(*args)
        finally:
            os.sched_setaffinity(0, before)

    def applied_cpus(self) -> list[int]:
        """The CPUs the threads that ran the model may use, read back from the kernel (every CPU the
        process may use when none was pinned)."""
        if not self.cpus:
            return sorted(os.sched_getaffinity(os.getpid()))
        found = set(self._during_calls)
        for tid in self._pinned:
            try:
                found |= os.sched_getaffinity(tid)
            except ProcessLookupError:
                continue  # a pool thread that has ended
        return sorted(found)


def _pin(cpus: tuple[int, ...]) -> None:
    """Pin the calling thread (Linux: this thread only; threads it starts inherit it). The kernel refuses a
    set none of whose CPUs this process may use (a container of its own): the thread then stays where it
    is, which ``applied_cpus`` reads back for the manifest and the fairness box."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cpus)


_LOADED: dict[tuple[str, str], InProcessClient] = {}  # (runtime, artifact directory) -> its latest client


def inprocess_client(runtime: str, layout: ArtifactLayout, config: ServerConfig) -> InProcessClient:
    """A baseline client for ``runtime`` (a runtime's target name, e.g. ``torch:compiled``; ``torch`` and
    ``tf`` name the frameworks' plain runtimes) using the config's thread counts and CPU set."""
    name = runtime if ":" in runtime else f"{runtime}:inprocess"
    client = InProcessClient(lambda: runtimes.get(name).load(layout, config), config.cpus)
    _LOADED[name, str(Path(layout.root))] = client
    return client


def applied_cpus(runtime: str, artifact: str) -> list[int] | None:
    """The CPUs the model threads of ``runtime`` on ``artifact``, loaded in this process, may use (read
    back from the kernel); ``None`` when it was not loaded here."""
    client = _LOADED.get((runtime, str(Path(artifact))))
    return client.applied_cpus() if client is not None else None
