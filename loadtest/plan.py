"""What a benchmark runs: load points (closed or open loop), measurement windows, and the max-rate search."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from serveoff.errors import ServeoffError

CLOSED, OPEN = "closed", "open"
LOADS = ("closed", "open", "search")
ARRIVALS = ("poisson", "constant")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)
DEFAULT_RATES = (25.0, 50.0, 100.0, 200.0)


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
    """

    warmup_s: float = 2.0
    window_s: float = 3.0
    min_windows: int = 3
    max_windows: int = 8
    stable_windows: int = 3
    tolerance: float = 0.10

    def validate(self) -> None:
        if self.warmup_s < 0 or self.window_s <= 0:
            raise ServeoffError("--warmup must be 0 s or more and --window more than 0 s")
        if not 1 <= self.min_windows <= self.max_windows:
            raise ServeoffError(
                f"need 1 <= --min-windows ({self.min_windows}) <= --max-windows ({self.max_windows})"
            )
        if not 0 < self.tolerance < 1:
            raise ServeoffError(f"--tolerance must be between 0 and 1, got {self.tolerance}")

    @property
    def longest_s(self) -> float:
        """The longest a load point can take, warm-up included."""
        return self.warmup_s + self.max_windows * self.window_s

    def to_json(self) -> dict:
        return asdict(self)


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
        if self.p99_bound_ms <= 0 or self.start_rate <= 0:
            raise ServeoffError("--p99-bound-ms and --start-rate must be positive")
        if self.max_probes < 2:
            raise ServeoffError(f"--max-probes must be at least 2, got {self.max_probes}")

    def to_json(self) -> dict:
        return asdict(self)


def parse_numbers(text: str, what: str, kind: type = int) -> tuple:
    """``1,2,4`` as numbers; one clear line when malformed or not positive."""
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ServeoffError(f"{what} {text!r} is malformed; write it like 1,2,4") from None
    if not values or any(v <= 0 for v in values):
        raise ServeoffError(f"{what} {text!r} must list positive numbers")
    return values


def load_points(load: str, concurrency: str | None, rates: str | None, arrival: str) -> list[LoadPoint]:
    """The load points of a sweep: a closed-loop concurrency sweep or an open-loop rate sweep."""
    if load not in LOADS:
        raise ServeoffError(f"unknown load {load!r}; choose one of: {', '.join(LOADS)}")
    if arrival not in ARRIVALS:
        raise ServeoffError(f"unknown arrival process {arrival!r}; choose one of: {', '.join(ARRIVALS)}")
    if load == CLOSED:
        levels = parse_numbers(concurrency, "--concurrency") if concurrency else DEFAULT_CONCURRENCY
        return [closed(c) for c in levels]
    if load == OPEN:
        levels = parse_numbers(rates, "--rate", float) if rates else DEFAULT_RATES
        return [open_loop(r, arrival) for r in levels]
    return []
