"""Overload: offered load at 2x and 5x the measured capacity, then the return to baseline latency."""

from __future__ import annotations

import time

from serveoff.loadtest.plan import closed, open_loop
from serveoff.loadtest.probes.context import Probed, timeline
from serveoff.loadtest.probes.schema import ProbeResult, Sample

FACTORS = (2, 5)
CAPACITY_S = 3.0  # the closed-loop run that measures capacity
BASELINE_SHARE = 0.5  # the baseline and recovery load: half the capacity
RECOVERED_WITHIN = 1.5  # a slice whose median latency is at most this times the baseline's has recovered
SHED = ("HTTP 503", "HTTP 429", "RESOURCE_EXHAUSTED", "UNAVAILABLE")


def overload(probed: Probed) -> ProbeResult:
    """Capacity (closed loop), a baseline at half of it, then each overload level and its recovery."""
    settings = probed.settings
    result = probed.result("overload")
    t0 = time.monotonic()
    capacity_run = timeline(probed, closed(max(4, settings.concurrency)), CAPACITY_S, "capacity", t0)
    capacity = sum(s.ok for s in capacity_run.samples) / CAPACITY_S
    result.figures["capacity_rps"] = round(capacity, 1)
    if capacity <= 0:
        result.error = "no request was answered while capacity was measured"
        return result
    base_rate = max(1.0, BASELINE_SHARE * capacity)
    baseline = timeline(probed, open_loop(base_rate), 3.0, "baseline", t0)
    base_p50 = _median([s.p50_ms for s in baseline.samples])
    result.figures["baseline_p50_ms"] = base_p50
    result.series = capacity_run.samples + baseline.samples
    for factor in FACTORS:
        high = timeline(probed, open_loop(factor * capacity), settings.overload_s, f"{factor}x", t0)
        after = timeline(probed, open_loop(base_rate), settings.recovery_s, f"recovery after {factor}x", t0)
        result.series += high.samples + after.samples
        result.figures |= _level(factor, high.samples, high.errors, settings.overload_s)
        result.figures[f"recovery_{factor}x_s"] = _recovery(after.samples, base_p50, high.samples)
        running = bool(probed.server.processes())
        result.figures[f"crashed_{factor}x"] = not running
        if not running:
            result.error = f"{probed.server.name} stopped running under {factor}x its capacity"
            break
    result.findings = _findings(result.figures)
    return result


def _level(factor: int, samples: list[Sample], errors: dict[str, int], seconds: float) -> dict:
    ok = sum(s.ok for s in samples)
    shed = sum(n for kind, n in errors.items() if any(mark in kind for mark in SHED))
    timeouts = sum(n for kind, n in errors.items() if "timeout" in kind.lower() or "DEADLINE" in kind)
    return {
        f"goodput_{factor}x_rps": round(ok / seconds, 1),
        f"shed_{factor}x": shed,
        f"timeouts_{factor}x": timeouts,
        f"failed_{factor}x": sum(s.failed for s in samples),
        f"p99_{factor}x_ms": max((s.p99_ms for s in samples if s.p99_ms is not None), default=None),
        f"errors_{factor}x": ", ".join(f"{k} x{n}" for k, n in sorted(errors.items())) or "none",
    }


def _recovery(after: list[Sample], base_p50: float | None, high: list[Sample]) -> float | None:
    """Seconds from the overload's end to the first slice back within ``RECOVERED_WITHIN`` of baseline."""
    if base_p50 is None or not high:
        return None
    end = high[-1].t_s
    for sample in after:
        if sample.ok and sample.p50_ms is not None and sample.p50_ms <= RECOVERED_WITHIN * base_p50:
            return round(max(0.0, sample.t_s - end), 2)
    return None


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


def _findings(figures: dict) -> list[str]:
    lines = []
    for factor in FACTORS:
        if f"shed_{factor}x" not in figures:
            continue
        how = "sheds load" if figures[f"shed_{factor}x"] else "sheds nothing"
        back = figures.get(f"recovery_{factor}x_s")
        lines.append(f"at {factor}x capacity it {how}, times out {figures[f'timeouts_{factor}x']} requests; "
                     + ("it did not return to baseline latency in the watch" if back is None
                        else f"baseline latency is back {back} s after the overload"))  # fmt: skip
    return lines
