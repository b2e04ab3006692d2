"""What each in-process runtime costs before it serves: load (or compile) time and its first call.

The bench loads every in-process runtime of a run before the first load point, in the process that will
run it, so that no load point pays for it: the time from artifact to runner, the first call on the
bench's batch (where ``torch.compile`` and XLA compile) and the median of a few calls after it. For a
runtime that compiles on its first call, the compile time is the first call minus a warm one. The engine's
libraries are imported before the clock starts, so no runtime is charged for an import another one made.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from importlib import import_module

import numpy as np

from serveoff.loadtest.measure import Subject
from serveoff.serving import runtimes

WARM_CALLS = 5


@dataclass(frozen=True)
class RuntimeStartup:
    """One runtime's start on one model, as ``results.json`` keeps it (``runtimes[]``)."""

    model: str
    target: str
    load_s: float  # from the artifact directory to a runner
    first_call_ms: float  # the first call on the bench's batch
    warm_call_ms: float  # the median of the WARM_CALLS calls after it
    compile_s: float | None  # first call minus a warm one, for a runtime that compiles on its first call
    batch_size: int

    def to_json(self) -> dict:
        """Plain data for results.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RuntimeStartup:
        """The entry ``to_json`` wrote."""
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


def measure_startups(subjects: dict[tuple[str, str], Subject]) -> list[RuntimeStartup]:
    """Load every in-process subject's runtime (into the cache its load points use) and time it."""
    from serveoff.loadtest.spec import InProcess
    from serveoff.loadtest.users import load_runner

    found = []
    for (model, name), subject in subjects.items():
        if not subject.target.is_baseline:
            continue
        for package in runtimes.PACKAGES[name]:
            import_module(package)
        how = subject.request["inprocess"]
        batch = np.frombuffer(subject.request["body"], dtype=how["dtype"]).reshape(how["shape"])
        started = time.perf_counter()
        runner = load_runner(InProcess.from_json(how))
        loaded = time.perf_counter()
        runner.predict(batch)
        first = time.perf_counter() - loaded
        warm = statistics.median(_timed(runner.predict, batch) for _ in range(WARM_CALLS))
        compiles = runtimes.get(name).compiles
        found.append(RuntimeStartup(
            model, name, round(loaded - started, 4), round(first * 1e3, 3), round(warm * 1e3, 3),
            round(max(first - warm, 0.0), 4) if compiles else None, subject.batch_size,
        ))  # fmt: skip
    return found


def _timed(call, batch: np.ndarray) -> float:
    started = time.perf_counter()
    call(batch)
    return time.perf_counter() - started
