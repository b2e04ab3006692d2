"""Latency histograms: HdrHistograms in microseconds, 3 significant digits, in the standard encoding."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: longer than any request timeout
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


def new_histogram() -> HdrHistogram:
    """An empty latency histogram (microseconds)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(histogram: HdrHistogram, latency_s: float) -> None:
    """Add one latency given in seconds, clamped into the trackable range."""
    histogram.record_value(min(max(round(latency_s * 1e6), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    """The standard compressed, base64 HdrHistogram encoding (readable by any HdrHistogram library)."""
    return histogram.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    """A histogram from ``encode``'s text."""
    histogram = new_histogram()
    if text:
        histogram.decode_and_add(text.encode("ascii"))
    return histogram


def merge(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    """One histogram holding every value of ``histograms``."""
    merged = new_histogram()
    for histogram in histograms:
        merged.add(histogram)
    return merged


def summary(histogram: HdrHistogram) -> dict[str, float | None]:
    """Percentiles and max in microseconds (``None`` when empty)."""
    if histogram.get_total_count() == 0:
        return {name: None for name in [*PERCENTILES, "max"]}
    values: dict[str, float | None] = {
        name: float(histogram.get_value_at_percentile(p)) for name, p in PERCENTILES.items()
    }
    values["max"] = float(histogram.get_max_value())
    return values


def count_vectors(histograms: list[HdrHistogram]) -> tuple[np.ndarray, np.ndarray]:
    """The histograms as one value axis and a count matrix (one row per histogram), for resampling."""
    rows = [
        {item.value_iterated_to: item.count_at_value_iterated_to for item in h.get_recorded_iterator()}
        for h in histograms
    ]
    values = np.array(sorted({v for row in rows for v in row}), dtype=np.float64)
    counts = np.zeros((len(rows), len(values)))
    index = {v: i for i, v in enumerate(values)}
    for r, row in enumerate(rows):
        for v, c in row.items():
            counts[r, index[v]] = c
    return values, counts
