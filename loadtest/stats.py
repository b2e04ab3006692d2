"""Statistics of a load point from its measurement windows: stability, estimates, confidence intervals.

Intervals come from a bootstrap over windows: windows are resampled with replacement, their histograms
merged, and the statistic recomputed. Resampling whole windows keeps the correlation between requests
close in time, which a per-request interval would ignore, so the interval reflects run-to-run noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

from serveoff.loadtest.histograms import PERCENTILES, count_vectors, decode, encode, merge, summary
from serveoff.loadtest.plan import WindowPolicy

CONFIDENCE = 0.95
RESAMPLES = 2000
OVERLOADED_SHARE = 0.01  # more scheduled requests than this failed or went unanswered: load not served
# A request sent this long after its scheduled time, with a slot free, was sent late: its latency holds
# that much of the generator's own delay. The open loop itself sends within tens of microseconds (a
# timerfd and a short spin, users.py), but a shared machine deschedules the generator: on 2 busy cores
# 5-7 ms lags hit about 1% of sends. 10 ms is past that noise, and a point with over 1% of its sends this
# late (its send-lag p99 above it) has a tail that is partly the generator's: it is generator-bound.
# The send lag's p50 and p99 are reported for every open-loop point either way.
LATE_SEND_S = 0.010
GENERATOR_LATE_SHARE = 0.01  # more requests than this were sent late with a slot free: the generator lagged
GENERATOR_LAG_PERCENTILE = 99.0  # ... that is, this percentile of the send lag is above LATE_SEND_S


@dataclass
class Window:
    """One measurement window of one load point, merged over every load-generator process."""

    index: int
    duration_s: float
    requests: int  # answered successfully
    errors: dict[str, int]  # failed requests by kind
    histogram: HdrHistogram  # latencies of successful requests (µs)
    generator_busy: float  # the busiest load-generator event loop's share of one CPU, 0..1
    server_cpu_s: float | None = None  # CPU seconds the server's processes used in the window
    unfinished: int = 0  # requests still unanswered when the window had to close
    generators: int = 1  # load-generator processes whose recordings were merged
    scheduled: int | None = None  # requests scheduled in the window (None: read from an older results file)
    late_sends: int = 0  # sent over LATE_SEND_S after their scheduled time though a slot was free
    queued: int = 0  # open loop: waited in the generator for one of its in-flight slots
    send_lag_max_s: float = 0.0  # the latest any of its requests was sent after its scheduled time
    send_lag: HdrHistogram | None = None  # open loop: each send's lag (µs), slot free (None: older file)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + self.unfinished

    def to_json(self) -> dict:
        """The window as stored in ``results.json`` (its histogram encoded)."""
        return {
            "index": self.index,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "errors": self.errors,
            "unfinished": self.unfinished,
            "scheduled": self.scheduled,
            "late_sends": self.late_sends,
            "queued": self.queued,
            "send_lag_max_s": self.send_lag_max_s,
            "generators": self.generators,
            "generator_busy": round(self.generator_busy, 3),
            "server_cpu_s": self.server_cpu_s,
            "histogram": encode(self.histogram),
            "send_lag_histogram": encode(self.send_lag) if self.send_lag is not None else None,
        }

    @classmethod
    def from_json(cls, doc: dict) -> Window:
        """A window read back from ``results.json``."""
        return cls(
            index=doc["index"],
            duration_s=doc["duration_s"],
            requests=doc["requests"],
            errors=dict(doc["errors"]),
            histogram=decode(doc["histogram"]),
            generator_busy=doc["generator_busy"],
            server_cpu_s=doc["server_cpu_s"],
            unfinished=doc["unfinished"],
            generators=doc["generators"],
            scheduled=doc.get("scheduled"),
            late_sends=doc.get("late_sends", 0),
            queued=doc.get("queued", 0),
            send_lag_max_s=doc.get("send_lag_max_s", 0.0),
            send_lag=decode(doc["send_lag_histogram"]) if doc.get("send_lag_histogram") else None,
        )


def stable(windows: list[Window], policy: WindowPolicy, open_loop: bool = False) -> bool:
    """Whether the last ``policy.stable_windows`` windows agree within ``policy.tolerance``.

    Closed loop: throughput and median latency. Open loop: median latency only, as the arrival process
    sets the throughput (a Poisson count varies by itself).
    """
    recent = windows[-policy.stable_windows :]
    if len(recent) < policy.stable_windows or not all(w.requests for w in recent):
        return False
    p50 = [summary(w.histogram)["p50"] or 0.0 for w in recent]
    steady_rate = open_loop or _within([w.throughput for w in recent], policy.tolerance)
    return steady_rate and _within(p50, policy.tolerance)


def load_flags(windows: list[Window]) -> dict:
    """Whether the offered load was served (``overloaded``, with why) and sent on time (``generator_bound``).

    Every scheduled request counts: answered, failed by kind, or unfinished when its window closed.
    Generator-bound: the send lag's p99 is above ``LATE_SEND_S`` (over 1% of the sends that had a slot
    free were late); windows read from older files, without a send-lag histogram, count ``late_sends``.
    """
    scheduled = sum(w.requests + w.failed if w.scheduled is None else w.scheduled for w in windows)
    failed = sum(w.failed for w in windows)
    late = sum(w.late_sends for w in windows)
    overloaded = failed > OVERLOADED_SHARE * scheduled
    kinds: dict[str, int] = {}
    for window in windows:
        for kind, count in [*window.errors.items(), ("unfinished", window.unfinished)]:
            kinds[kind] = kinds.get(kind, 0) + count
    shown = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]) if n)
    share = failed / scheduled if scheduled else 0.0
    return {
        "overloaded": overloaded,
        "overload": f"{share:.1%} of {scheduled:,} scheduled requests failed or unanswered ({shown})"
        if overloaded
        else None,
        "generator_bound": late > GENERATOR_LATE_SHARE * scheduled
        or _lag_p99_us(windows) > LATE_SEND_S * 1e6,
        "late_sends": late,
        "queued_in_generator": sum(w.queued for w in windows),
        "send_lag_max_ms": round(1000 * max((w.send_lag_max_s for w in windows), default=0.0), 3),
    }


def send_lag(windows: list[Window]) -> HdrHistogram:
    """Every window's send lags in one histogram (µs; empty for closed loops and older files)."""
    return merge(w.send_lag for w in windows if w.send_lag is not None)


def _lag_p99_us(windows: list[Window]) -> float:
    lags = send_lag(windows)
    return float(lags.get_value_at_percentile(GENERATOR_LAG_PERCENTILE)) if lags.get_total_count() else 0.0


def _within(values: list[float], tolerance: float) -> bool:
    mean = float(np.mean(values))
    if mean == 0:
        return all(v == 0 for v in values)
    return all(abs(v - mean) <= tolerance * mean for v in values)


def interval(value: float | None, samples: np.ndarray) -> dict[str, float | None]:
    """``{"value", "low", "high"}``: the estimate with its bootstrap confidence interval."""
    if value is None:
        return {"value": None, "low": None, "high": None}
    low, high = bounds(value, samples)
    return {"value": value, "low": low, "high": high}


def bounds(value: float, samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of the finite bootstrap ``samples``, widened to contain ``value``."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return value, value
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(min(low, value)), float(max(high, value))


def _resample_weights(n: int, seed: int) -> np.ndarray:
    """``RESAMPLES`` x ``n`` counts: how often each window is drawn in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(RESAMPLES, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)


def bootstrap(windows: list[Window], statistic: str, seed: int = 0) -> np.ndarray:
    """``RESAMPLES`` values of ``statistic`` over windows drawn with replacement (NaN: nothing answered).

    ``statistic`` is ``throughput_rps``, ``error_rate`` or a latency percentile name (``p50`` ... ``p99.9``).
    """
    weights = _resample_weights(len(windows), seed)
    if statistic in PERCENTILES:
        values, counts = count_vectors([w.histogram for w in windows])
        if not values.size:
            return np.full(RESAMPLES, np.nan)
        return _percentile_of_counts(values, weights @ counts, PERCENTILES[statistic])
    return _rate_samples(windows, weights)[statistic]


def _rate_samples(windows: list[Window], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Resampled throughput and error rate."""
    requests = np.array([w.requests for w in windows], dtype=np.float64)
    durations = np.array([w.duration_s for w in windows])
    failed = np.array([w.failed for w in windows], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "throughput_rps": (weights @ requests) / (weights @ durations),
            "error_rate": (weights @ failed) / (weights @ (requests + failed)),
        }


def _percentile_of_counts(values: np.ndarray, counts: np.ndarray, percentile: float) -> np.ndarray:
    """HdrHistogram's percentile rule applied to each row of ``counts``."""
    totals = counts.sum(axis=1)
    wanted = np.maximum(np.floor(percentile / 100 * totals + 0.5), 1)
    cumulative = np.cumsum(counts, axis=1)
    index = np.array([np.searchsorted(row, w) for row, w in zip(cumulative, wanted, strict=True)])
    result = values[np.minimum(index, len(values) - 1)]
    return np.where(totals > 0, result, np.nan)


def estimate(windows: list[Window], batch_size: int, seed: int = 0) -> dict:
    """Throughput, latency percentiles, errors and server CPU per 1,000 inferences, with intervals."""
    merged = merge(w.histogram for w in windows)
    point = summary(merged)
    requests = np.array([w.requests for w in windows], dtype=np.float64)
    durations = np.array([w.duration_s for w in windows])
    failed = np.array([w.failed for w in windows], dtype=np.float64)
    weights = _resample_weights(len(windows), seed)
    rates = _rate_samples(windows, weights)
    throughput_samples, error_samples = rates["throughput_rps"], rates["error_rate"]

    total_time = float(durations.sum())
    throughput = float(requests.sum() / total_time) if total_time else 0.0
    attempted = float(requests.sum() + failed.sum())
    latency: dict[str, dict] = {}
    values, counts = count_vectors([w.histogram for w in windows])
    resampled = weights @ counts if values.size else None
    for name, percentile in PERCENTILES.items():
        samples = (
            _percentile_of_counts(values, resampled, percentile) if resampled is not None else np.array([])
        )
        latency[name] = interval(point[name], samples)
    maxima = np.array([w.histogram.get_max_value() for w in windows if w.histogram.get_total_count()])
    latency["max"] = {"value": point["max"], "low": None, "high": None}
    if maxima.size:
        latency["max"]["low"], latency["max"]["high"] = float(maxima.min()), float(maxima.max())

    errors: dict[str, int] = {}
    for window in windows:
        for kind, count in window.errors.items():
            errors[kind] = errors.get(kind, 0) + count
        if window.unfinished:
            errors["unfinished"] = errors.get("unfinished", 0) + window.unfinished
    scheduled = [w.scheduled for w in windows]
    result = {
        "windows": len(windows),
        "scheduled": sum(scheduled) if None not in scheduled else None,  # None: an older results file
        "requests": int(requests.sum()),
        "failed": int(failed.sum()),
        "errors": errors,
        "error_rate": interval(float(failed.sum() / attempted) if attempted else 0.0, error_samples),
        "throughput_rps": interval(throughput, throughput_samples),
        "inferences_per_s": interval(throughput * batch_size, throughput_samples * batch_size),
        "latency_us": latency,
        "send_lag_us": {k: v for k, v in summary(send_lag(windows)).items() if k in ("p50", "p99", "max")},
        "cpu_s_per_1000": None,
    }
    cpu = [w.server_cpu_s for w in windows]
    if all(c is not None for c in cpu) and requests.sum() > 0:
        cpu_s = np.array(cpu, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            cpu_samples = 1000 * (weights @ cpu_s) / (weights @ requests * batch_size)
        result["cpu_s_per_1000"] = interval(
            float(1000 * cpu_s.sum() / (requests.sum() * batch_size)), cpu_samples
        )
    return result
