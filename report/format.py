"""How figures read in reports: latencies in ms, rates in requests/s, each with its 95% interval."""

from __future__ import annotations


def significant(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, without exponent notation for everyday sizes."""
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    return f"{float(text):,.0f}" if "e+" in text else text


def ms(us: float | None) -> str:
    """A latency given in microseconds, in milliseconds."""
    return "n/a" if us is None else f"{significant(us / 1000)} ms"


def with_interval(stat: dict | None, unit: str = "") -> str:
    """``value [low, high] unit`` of an estimate (``unit`` "ms" converts from microseconds)."""
    if stat is None or stat.get("value") is None:
        return "n/a"
    scale = 1 / 1000 if unit == "ms" else 1.0
    value = significant(stat["value"] * scale)
    suffix = f" {unit}" if unit else ""
    if stat.get("low") is None or stat.get("high") is None:
        return f"{value}{suffix}"
    return f"{value} [{significant(stat['low'] * scale)}, {significant(stat['high'] * scale)}]{suffix}"


def percent(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.3g}%"
