"""What a benchmark runs: load points (closed or open loop), measurement windows, and the max-rate search."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from serveoff.errors import ServeoffError

CLOSED, OPEN = "closed", "open"
LOADS = ("closed", "open", "search")
ARRIVALS = ("poisson", "constant")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)
DEFAULT_RATES = (25.0, 50.0, 100.0, 200.0)


@dataclass(frozen=True)
class Bound:
    """The values a numeric option may take: ``low`` (``above``: exclusive) up to ``high``, and why."""

    low: float
    high: float
    unit: str = ""
    why: str = ""  # why the upper bound (or the lower one) is there
    above: bool = False


_HISTOGRAM = "latencies are tracked up to 10 minutes"
_GENERATOR = "past what serveoff's load generators make: one process sends about 45,000 requests/s"
_USERS = "each user holds a connection and a greenlet in the load generator: past that it measures itself"
LIMITS: dict[str, Bound] = {
    "--concurrency": Bound(1, 10_000, "users per point", _USERS),
    "--rate": Bound(0.1, 100_000, "requests/s", _GENERATOR),
    "--start-rate": Bound(0.1, 100_000, "requests/s", _GENERATOR),
    "--p99-bound-ms": Bound(0, 600_000, "ms", _HISTOGRAM, above=True),
    "--max-probes": Bound(2, 100, "probes", "a search bisects to 10% within a few dozen probes"),
    "--batch-size": Bound(1, 1024, "inputs", "each request is built in memory and sent whole"),
    "--timeout": Bound(0, 600, "s", _HISTOGRAM, above=True),
    "--warmup": Bound(0, 3600, "s", "an hour warms up any server"),
    "--settle-slice": Bound(0.1, 60, "s", "a slice is one measurement window of the settling warm-up"),
    "--settle-floor": Bound(0, 3600, "s", "an hour warms up any server"),
    "--settle-cap": Bound(0, 3600, "s", "an hour warms up any server"),
    "--window": Bound(0.1, 3600, "s", "windows are closed on a 20 ms tick"),
    "--min-windows": Bound(1, 100, "windows", "each window keeps its own latency histogram"),
    "--max-windows": Bound(1, 100, "windows", "each window keeps its own latency histogram"),
    "--tolerance": Bound(0, 0.9, "", "a share of the mean: windows further apart do not agree", above=True),
    "--workers": Bound(0, 64, "processes", "each worker is a Python process of its own"),
    "--ui-port": Bound(1, 65_535, "", "a TCP port"),
    "--seed": Bound(0, 2**63 - 1, "", "seeds are non-negative 64-bit integers"),
}


def check(flag: str, value: float) -> None:
    """One clear line when ``value`` of option ``flag`` is not a finite number within ``LIMITS[flag]``."""
    bound = LIMITS[flag]
    unit = f" {bound.unit}" if bound.unit else ""
    low, high, shown = _number(bound.low), _number(bound.high), _number(value, plain=True)
    span = f"more than {low} and at most {high}{unit}" if bound.above else f"from {low} to {high}{unit}"
    if not math.isfinite(value):
        raise ServeoffError(f"{flag} {value} is not a finite number; give a value {span}")
    if value > bound.high:
        raise ServeoffError(f"{flag} {shown} is too high: at most {high}{unit} ({bound.why})")
    if value < bound.low or (bound.above and value == bound.low):
        raise ServeoffError(f"{flag} {shown} is too low; give a value {span}")


def _number(value: float, plain: bool = False) -> str:
    """``10,000`` and ``0.1`` (``plain``: as typed, ``100000000``)."""
    if isinstance(value, int):
        return str(value) if plain else f"{value:,}"
    return f"{value:g}" if plain else f"{value:,g}"


@dataclass(frozen=True)
class LoadPoint:
    """One load level: ``concurrency`` users in a closed loop, or ``rate`` arrivals/s in an open loop."""

    loop: str  # CLOSED or OPEN
    concurrency: int | None = None
    rate: float | None = None  # requests per second offered (open loop)
    arrival: str = "poisson"

    @property
    def label(self) -> str:
        """Short name: ``c=8`` or ``r=100/s``."""
        return f"c={self.concurrency}" if self.loop == CLOSED else f"r={self.rate:g}/s"

    @property
    def offered(self) -> float:
        """The x-axis value of this point: concurrency or offered rate."""
        return float(self.concurrency if self.loop == CLOSED else self.rate or 0.0)

    def to_json(self) -> dict:
        if self.loop == CLOSED:
            return {"loop": CLOSED, "concurrency": self.concurrency}
        return {"loop": OPEN, "rate": self.rate, "arrival": self.arrival}


def closed(concurrency: int) -> LoadPoint:
    return LoadPoint(CLOSED, concurrency=concurrency)


def open_loop(rate: float, arrival: str = "poisson") -> LoadPoint:
    return LoadPoint(OPEN, rate=rate, arrival=arrival)


@dataclass(frozen=True)
class WindowPolicy:
    """How long a load point is measured: warm-up, then windows until ``stable_windows`` agree or the cap.

    Windows agree when their median latency (and, in a closed loop, their throughput) is within
    ``tolerance`` of its mean over the last ``stable_windows`` windows.

    Before each target's first point (per model) the server is warmed until it has settled: slices of
    ``settle_slice_s`` at that point's load until ``stable_windows`` slices agree as windows do, after at
    least ``settle_floor_s`` and at most ``settle_cap_s`` (0: no settling warm-up).
    """

    warmup_s: float = 2.0
    window_s: float = 3.0
    min_windows: int = 3
    max_windows: int = 8
    stable_windows: int = 3
    tolerance: float = 0.10
    settle_slice_s: float = 1.0
    settle_floor_s: float = 5.0
    settle_cap_s: float = 60.0

    def validate(self) -> None:
        """One clear line for a value out of its bounds (``LIMITS``) or min-windows above max-windows."""
        check("--warmup", self.warmup_s)
        check("--settle-slice", self.settle_slice_s)
        check("--settle-floor", self.settle_floor_s)
        check("--settle-cap", self.settle_cap_s)
        if self.settle_cap_s and self.settle_floor_s > self.settle_cap_s:
            raise ServeoffError(
                f"--settle-floor {self.settle_floor_s:g} s is above --settle-cap {self.settle_cap_s:g} s; "
                "give a floor at most the cap (or --settle-cap 0 for no settling warm-up)"
            )
        check("--window", self.window_s)
        check("--min-windows", self.min_windows)
        check("--max-windows", self.max_windows)
        check("--tolerance", self.tolerance)
        if self.min_windows > self.max_windows:
            raise ServeoffError(
                f"need 1 <= --min-windows ({self.min_windows}) <= --max-windows ({self.max_windows})"
            )

    def settle_windows(self) -> WindowPolicy:
        """The windows of a settling warm-up: slices from the floor up to the cap, no warm-up before them."""
        slices = max(1, _whole(self.settle_cap_s / self.settle_slice_s))
        floor = min(slices, max(self.stable_windows, _whole(self.settle_floor_s / self.settle_slice_s)))
        return replace(self, warmup_s=0.0, window_s=self.settle_slice_s, min_windows=floor,
                       max_windows=slices)  # fmt: skip

    @property
    def longest_s(self) -> float:
        """The longest a load point can take, warm-up included."""
        return self.warmup_s + self.max_windows * self.window_s

    def to_json(self) -> dict:
        return asdict(self)


def _whole(count: float) -> int:
    """``count`` rounded up, ignoring float noise (2.1 / 0.3 is 7, not 7.000000000000001)."""
    return math.ceil(round(count, 9))


@dataclass(frozen=True)
class SearchPolicy:
    """MLPerf Server-style search for the highest open-loop rate whose p99 stays under a bound.

    The rate doubles from ``start_rate`` until a probe fails, then bisects until the bracket is within
    ``precision`` (relative) or ``max_probes`` probes were run. A probe passes when its p99 is under the
    bound and at most ``max_error_rate`` of its requests failed or were still unanswered when their
    window closed (a server that falls behind builds a growing queue: its latency and unfinished
    requests show it, since every arrival counts from its scheduled time).
    """

    p99_bound_ms: float = 100.0
    start_rate: float = 10.0
    max_probes: int = 10
    precision: float = 0.10
    max_error_rate: float = 0.001
    arrival: str = "poisson"

    def validate(self) -> None:
        """One clear line for a value out of its bounds (``LIMITS``)."""
        check("--p99-bound-ms", self.p99_bound_ms)
        check("--start-rate", self.start_rate)
        check("--max-probes", self.max_probes)

    def to_json(self) -> dict:
        return asdict(self)


def parse_numbers(text: str, what: str, kind: type = int) -> tuple:
    """``1,2,4`` as numbers; one clear line when empty, malformed, not positive or out of ``LIMITS[what]``."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        raise ServeoffError(f"{what} {text!r} is empty; write it like 1,2,4, or leave it out for the default")
    if not all(parts):
        raise ServeoffError(f"{what} {text!r} has an empty entry; write it like 1,2,4")
    try:
        values = tuple(kind(part) for part in parts)
    except ValueError:
        raise ServeoffError(f"{what} {text!r} is malformed; write it like 1,2,4") from None
    if any(v <= 0 for v in values):
        raise ServeoffError(f"{what} {text!r} must list positive numbers")
    for value in values:
        check(what, value)
    return values


def load_points(load: str, concurrency: str | None, rates: str | None, arrival: str) -> list[LoadPoint]:
    """The load points of a sweep: a closed-loop concurrency sweep or an open-loop rate sweep."""
    if load not in LOADS:
        raise ServeoffError(f"unknown load {load!r}; choose one of: {', '.join(LOADS)}")
    if arrival not in ARRIVALS:
        raise ServeoffError(f"unknown arrival process {arrival!r}; choose one of: {', '.join(ARRIVALS)}")
    given_concurrency = parse_numbers(concurrency, "--concurrency") if concurrency is not None else None
    given_rates = parse_numbers(rates, "--rate", float) if rates is not None else None
    if load == CLOSED:
        return [closed(c) for c in given_concurrency or DEFAULT_CONCURRENCY]
    if load == OPEN:
        return [open_loop(r, arrival) for r in given_rates or DEFAULT_RATES]
    return []
