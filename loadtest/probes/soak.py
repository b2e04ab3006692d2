"""Soak: memory growth (the RSS slope) and latency drift over a long closed-loop run."""

from __future__ import annotations

import time

import numpy as np
import psutil

from serveoff.loadtest.plan import closed
from serveoff.loadtest.probes.context import Probed, timeline
from serveoff.loadtest.probes.schema import ProbeResult


def rss_mib(probed: Probed) -> float:
    """The server's resident memory now, summed over its processes."""
    total = 0
    for proc in probed.server.processes():
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def soak(probed: Probed) -> ProbeResult:
    """A closed loop for ``soak_s``: the RSS after each slice, and each slice's median latency."""
    settings = probed.settings
    result = probed.result("soak")
    memory: list[tuple[float, float]] = []
    t0 = time.monotonic()
    run = timeline(probed, closed(settings.concurrency), settings.soak_s, "soak", t0,
                   lambda _: memory.append((time.monotonic() - t0, rss_mib(probed))))  # fmt: skip
    for sample, (_, rss) in zip(run.samples, memory, strict=False):
        sample.note = f"rss {rss:.1f} MiB"
    lat = [(s.t_s, s.p50_ms) for s in run.samples if s.p50_ms is not None]
    result.series = run.samples
    result.figures = {
        "seconds": round(run.samples[-1].t_s, 1) if run.samples else 0.0,
        "requests": sum(s.ok for s in run.samples),
        "failed": run.failed,
        "rss_start_mib": round(memory[0][1], 1) if memory else None,
        "rss_end_mib": round(memory[-1][1], 1) if memory else None,
        "rss_slope_mib_per_min": _slope(memory, 60.0),
        "p50_drift_ms_per_min": _slope(lat, 60.0),
    }
    if not result.figures["requests"]:
        result.error = "no request was answered during the soak: the server stalled or stopped"
    return result


def _slope(points: list[tuple[float, float]], per: float) -> float | None:
    """The least-squares slope of ``points`` per ``per`` seconds (``None`` with fewer than 3)."""
    if len(points) < 3:
        return None
    x, y = np.array(points).T
    return round(float(np.polyfit(x, y, 1)[0]) * per, 3)
