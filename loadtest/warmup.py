"""Warm a target until it has settled, before its first measured point (TorchServe's JIT takes 20-30 s).

The warm-up is one continuous run of the first point's load, cut into short slices (measurement windows
of ``settle_slice_s``): it ends when the last ``stable_windows`` slices agree on median latency and, in a
closed loop, on throughput, within the policy's tolerance (the rule that ends a point's windows), but not
before ``settle_floor_s`` or the server's own floor (``Server.settle_floor_s``: TorchServe's 30 s), whichever
is longer; at ``settle_cap_s`` it stops unsettled (``capped``). It runs through the same
load engine and ``measure`` as the points it precedes, and nothing of it counts in their figures.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.histograms import summary as latency_summary
from serveoff.loadtest.measure import PointAborted, Subject, measure
from serveoff.loadtest.plan import LoadPoint, WindowPolicy
from serveoff.loadtest.stats import Window

PHASE = "settle"


@dataclass(frozen=True)
class Slice:
    """One slice of a warm-up: its median latency and throughput."""

    p50_us: float | None
    throughput_rps: float
    requests: int
    failed: int


@dataclass(frozen=True)
class Warmup:
    """One target's settling warm-up, as ``results.json`` keeps it (``warmups[]``)."""

    model: str
    target: str
    label: str  # the load it ran at: the target's first point
    seconds: float  # from the first slice's start to the last one's end, spawning included
    settled: bool  # the last slices agreed (False: it stopped at the cap)
    capped: bool
    slices: list[Slice]
    error: str | None = None  # why it stopped early (the point after it reports the failure)

    def to_json(self) -> dict:
        """Plain data for results.json."""
        return asdict(self)


def settle(
    engine: LoadEngine, subject: Subject, point: LoadPoint, policy: WindowPolicy, *, timeout_s: float,
    seed: int,
) -> Warmup | None:  # fmt: skip
    """Warm ``subject`` at ``point`` until it settles or the cap; ``None`` when the policy has no warm-up."""
    if policy.settle_cap_s <= 0:
        return None
    windows = replace(policy, settle_floor_s=min(policy.settle_cap_s, max(policy.settle_floor_s,
                                                                          server_floor_s(subject))))
    windows = windows.settle_windows()
    started = time.monotonic()
    error = None
    try:
        result = measure(engine, subject, point, windows, timeout_s=timeout_s, seed=seed, phase=PHASE)
    except PointAborted as err:  # what it measured is kept; the point after it reports the failure
        result, error = err.result, err.message
    slices = [_slice(Window.from_json(w)) for w in result.get("windows", [])]
    settled = bool(result.get("stable"))
    return Warmup(
        subject.model, subject.target.name, point.label, round(time.monotonic() - started, 2), settled,
        not settled and error is None and len(slices) >= windows.max_windows, slices, error,
    )  # fmt: skip


def server_floor_s(subject: Subject) -> float:
    """The settling warm-up the subject's server needs at least (``Server.settle_floor_s``; baselines 0)."""
    from serveoff.serving.targets import SERVERS, server_class

    if subject.target.system not in SERVERS:  # a baseline, or the harness's own responder
        return 0.0
    return server_class(subject.target.system).settle_floor_s


def _slice(window: Window) -> Slice:
    p50 = latency_summary(window.histogram)["p50"] if window.requests else None
    return Slice(p50, round(window.throughput, 2), window.requests, window.failed)


def describe(warmup: Warmup) -> str:
    """One log line for a warm-up."""
    how = "settled" if warmup.settled else "capped, not settled" if warmup.capped else "stopped"
    last = warmup.slices[-1] if warmup.slices else None
    tail = ""
    if last is not None and last.p50_us is not None:
        tail = f", last slice {last.throughput_rps:.1f} req/s p50 {last.p50_us / 1000:.2f} ms"
    return (f"{warmup.model} {warmup.target} warm-up at {warmup.label}: {how} after {len(warmup.slices)} "
            f"slices, {warmup.seconds:.1f} s{tail}")  # fmt: skip
