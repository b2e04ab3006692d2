"""Cold start: from launch to the first correct answer, and to steady-state latency."""

from __future__ import annotations

import time

import numpy as np

from serveoff.loadtest.probes.context import Probed, correct, send_once
from serveoff.loadtest.probes.schema import ProbeResult, Sample

STEADY_WITHIN = 0.2  # steady: the median of STEADY_RUN requests in a row this close to the final median
STEADY_RUN = 10
MAX_REQUESTS = 300


def cold_start(probed: Probed, launched_at: float) -> ProbeResult:
    """Sequential requests from the moment ``start`` returned; the launch started at ``launched_at``."""
    settings = probed.settings
    wire = probed.request()
    first = send_once(wire, settings.timeout_s)
    first_s = time.monotonic() - launched_at
    result = probed.result("cold_start")
    if not correct(probed, first, None):
        result.error = f"the first request got {first.status}"
        return result
    stamps, latencies = [], []
    deadline = time.monotonic() + settings.steady_s
    while len(latencies) < MAX_REQUESTS and time.monotonic() < deadline:
        reply = send_once(wire, settings.timeout_s)
        if reply.ok:
            stamps.append(time.monotonic() - launched_at)
            latencies.append(reply.seconds)
    final = float(np.median(latencies[-STEADY_RUN:])) if latencies else None
    steady = _steady_at(stamps, latencies, final)
    result.figures = {
        "first_answer_s": round(first_s, 3),
        "first_latency_ms": round(first.seconds * 1000, 3),
        "steady_s": None if steady is None else round(steady, 3),
        "steady_latency_ms": None if final is None else round(final * 1000, 3),
        "requests": len(latencies),
    }
    result.series = [Sample(round(t, 3), 1, 0, round(s * 1000, 3), None, "sequential")
                     for t, s in zip(stamps, latencies, strict=True)]  # fmt: skip
    return result


def _steady_at(stamps: list[float], latencies: list[float], final: float | None) -> float | None:
    """When the first ``STEADY_RUN`` requests whose median is near ``final`` began."""
    if final is None:
        return None
    for end in range(STEADY_RUN, len(latencies) + 1):
        if abs(float(np.median(latencies[end - STEADY_RUN : end])) - final) <= STEADY_WITHIN * final:
            return stamps[end - STEADY_RUN]
    return None
