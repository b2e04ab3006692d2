"""The max-rate search: the highest open-loop rate whose p99 stays under a bound (MLPerf's Server)."""

from __future__ import annotations

from dataclasses import dataclass, field

from serveoff.loadtest.plan import SearchPolicy
from serveoff.loadtest.results import PointResult, Summary


@dataclass
class RateSearch:
    """Doubles the rate until a probe fails (halves it while the first ones fail), then bisects."""

    policy: SearchPolicy
    passed_rate: float | None = None  # the highest rate that passed
    failed_rate: float | None = None  # the lowest rate that failed
    probes: list[dict] = field(default_factory=list)
    note: str | None = None

    def next_rate(self) -> float | None:
        """The rate to probe next, or ``None`` when the search is over."""
        if self.note or len(self.probes) >= self.policy.max_probes:
            return None
        low, high = self.passed_rate, self.failed_rate
        if low is None and high is None:
            return self.policy.start_rate
        if high is None:
            return low * 2
        if low is None:
            return high / 2
        if (high - low) / low <= self.policy.precision:
            return None
        return round((low + high) / 2, 3)

    def passes(self, rate: float, summary: Summary | None) -> bool:
        """Whether a probe at ``rate`` met the bound, with (almost) every arrival answered."""
        if summary is None:
            return False
        p99 = summary.latency("p99").value
        return (
            p99 is not None
            and p99 <= self.policy.p99_bound_ms * 1000
            and summary.error_rate.value <= self.policy.max_error_rate
        )

    def record(self, rate: float, result: PointResult | dict) -> None:
        """Take the result of the probe at ``rate``."""
        point = PointResult.of(result)
        summary, flags = point.summary, point.flags
        passed = self.passes(rate, summary)
        self.probes.append(
            {
                "rate": rate,
                "passed": passed,
                "client_bound": flags.client_bound,
                "generator_bound": flags.generator_bound,
                "overloaded": flags.overloaded,
                "p99_us": summary.latency("p99").value if summary else None,
                "throughput_rps": summary.throughput_rps.value if summary else None,
                "error_rate": summary.error_rate.value if summary else None,
            }
        )
        if flags.client_bound or flags.generator_bound:
            self.note = (
                f"stopped at {rate:g}/s: the load generator was saturated (client-bound) or sent requests "
                "late (generator-bound), so higher rates would measure the generator; add --workers"
            )
        elif passed:
            self.passed_rate = max(rate, self.passed_rate or 0.0)
        else:
            self.failed_rate = min(rate, self.failed_rate or rate)

    def to_json(self) -> dict:
        return {
            "p99_bound_ms": self.policy.p99_bound_ms,
            "max_rate": self.passed_rate,
            "first_failing_rate": self.failed_rate,
            "probes": self.probes,
            "note": self.note,
        }
