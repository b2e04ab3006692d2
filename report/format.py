"""How figures read in reports: latencies in ms, rates in requests/s, each with its 95% interval.

A figure that was not measured (null in ``results.json``) or is not a finite number (NaN) reads
``missing``, never ``nan``.
"""

from __future__ import annotations

import math

from serveoff.loadtest.results import Estimate

MISSING = "missing"


def finite(x: object) -> bool:
    """Whether ``x`` is a number that can be shown (not None, not NaN, not infinite)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def significant(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, without exponent notation for everyday sizes."""
    if not finite(x):
        return MISSING
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    return f"{float(text):,.0f}" if "e+" in text else text


def ms(us: float | None) -> str:
    """A latency given in microseconds, in milliseconds."""
    return f"{significant(us / 1000)} ms" if finite(us) else MISSING


def with_interval(stat: Estimate | None, unit: str = "") -> str:
    """``value [low, high] unit`` of an estimate (``unit`` "ms" converts from microseconds)."""
    if stat is None:
        return "n/a"
    if not finite(stat.value):
        return MISSING
    scale = 1 / 1000 if unit == "ms" else 1.0
    value = significant(stat.value * scale)
    suffix = f" {unit}" if unit else ""
    if stat.low is None or stat.high is None:
        return f"{value}{suffix}"
    if not (finite(stat.low) and finite(stat.high)):
        return f"{value}{suffix} [interval missing]"
    return f"{value} [{significant(stat.low * scale)}, {significant(stat.high * scale)}]{suffix}"


def percent(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x * 100:.3g}%" if finite(x) else MISSING
