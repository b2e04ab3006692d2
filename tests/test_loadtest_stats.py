"""The load test's arithmetic without servers: histograms, windows, intervals, search and results files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serveoff.errors import ServeoffError
from serveoff.loadtest.histograms import (
    count_vectors,
    decode,
    encode,
    new_histogram,
    record,
    summary,
)
from serveoff.loadtest.plan import SearchPolicy, WindowPolicy, load_points
from serveoff.loadtest.results import SCHEMA, PointResult, read_results, serving_tax
from serveoff.loadtest.search import RateSearch
from serveoff.loadtest.stats import Window, _percentile_of_counts, estimate, load_flags, stable


def window(latencies_ms: list[float], index: int = 0, duration: float = 1.0, errors: int = 0) -> Window:
    histogram = new_histogram()
    for ms in latencies_ms:
        record(histogram, ms / 1000)
    return Window(index, duration, len(latencies_ms), {"HTTP 503": errors} if errors else {}, histogram, 0.1)


def test_latencies_are_kept_in_microseconds_and_survive_encoding() -> None:
    histogram = new_histogram()
    for us in range(1, 1001):
        record(histogram, us / 1e6)
    back = decode(encode(histogram))
    assert back.get_total_count() == 1000
    stats = summary(back)
    assert stats["p50"] == pytest.approx(500, abs=1)
    assert stats["p99"] == pytest.approx(990, abs=1)
    assert stats["max"] == pytest.approx(1000, abs=1)


def test_resampling_percentiles_follow_hdrhistograms_rule() -> None:
    rng = np.random.default_rng(1)
    histogram = new_histogram()
    for value in rng.lognormal(8, 1, 5000):
        record(histogram, value / 1e6)
    values, counts = count_vectors([histogram])
    for percentile in (50, 90, 99, 99.9):
        mine = _percentile_of_counts(values, counts, percentile)[0]
        assert mine == histogram.get_value_at_percentile(percentile)


def test_intervals_contain_the_estimate_and_widen_with_noise() -> None:
    rng = np.random.default_rng(2)
    steady = [window(list(rng.normal(10, 0.5, 200)), i) for i in range(6)]
    noisy = [window(list(rng.normal(10 + 5 * (i % 2), 0.5, 200)), i) for i in range(6)]
    calm, wild = estimate(steady, batch_size=1), estimate(noisy, batch_size=1)
    for result in (calm, wild):
        for stat in [result["throughput_rps"], *(result["latency_us"][p] for p in ("p50", "p99"))]:
            assert stat["low"] <= stat["value"] <= stat["high"]
    width = lambda r: r["latency_us"]["p50"]["high"] - r["latency_us"]["p50"]["low"]  # noqa: E731
    assert width(wild) > 5 * width(calm)
    assert calm["throughput_rps"]["value"] == pytest.approx(200)
    assert calm["inferences_per_s"]["value"] == pytest.approx(200)
    assert estimate(steady, batch_size=8)["inferences_per_s"]["value"] == pytest.approx(1600)


def test_errors_are_counted_by_kind_and_as_a_rate() -> None:
    result = estimate([window([5.0] * 90, errors=10), window([5.0] * 100, 1)], batch_size=1)
    assert result["errors"] == {"HTTP 503": 10}
    assert result["error_rate"]["value"] == pytest.approx(10 / 200)


def test_server_cpu_per_thousand_inferences() -> None:
    windows = [window([5.0] * 100, i) for i in range(3)]
    for w in windows:
        w.server_cpu_s = 0.5
    result = estimate(windows, batch_size=2)
    assert result["cpu_s_per_1000"]["value"] == pytest.approx(1000 * 1.5 / 600)


def test_stability_needs_agreeing_windows() -> None:
    policy = WindowPolicy(stable_windows=3, tolerance=0.1)
    same = [window([10.0] * 100, i) for i in range(3)]
    assert stable(same, policy)
    assert not stable(same[:2], policy)
    drifting = [window([10.0 * (1 + 0.3 * i)] * 100, i) for i in range(3)]
    assert not stable(drifting, policy)
    fewer = [window([10.0] * n, i) for i, n in enumerate((100, 70, 100))]
    assert not stable(fewer, policy)  # closed loop: throughput must agree too
    assert stable(fewer, policy, open_loop=True)  # open loop: the arrival process sets the count


def test_search_doubles_then_bisects_within_the_probe_budget() -> None:
    search = RateSearch(SearchPolicy(p99_bound_ms=10, start_rate=10, max_probes=10, precision=0.1))
    capacity = 55.0
    rates = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        p99 = 1_000 if rate <= capacity else 50_000
        point = {
            "client_bound": False,
            "summary": {
                "latency_us": {"p99": {"value": p99}},
                "error_rate": {"value": 0.0},
                "throughput_rps": {"value": rate},
            },
        }
        search.record(rate, point)
    assert rates[:4] == [10, 20, 40, 80]
    assert len(rates) <= 10
    assert search.passed_rate <= capacity < search.failed_rate
    assert (search.failed_rate - search.passed_rate) / search.passed_rate <= 0.1


def test_search_stops_when_the_generator_is_saturated() -> None:
    search = RateSearch(SearchPolicy(start_rate=10))
    ok = {"latency_us": {"p99": {"value": 1}}, "error_rate": {"value": 0.0}, "throughput_rps": {"value": 10}}
    search.record(10, {"client_bound": True, "summary": ok})
    assert search.next_rate() is None and "client-bound" in search.note


@pytest.mark.parametrize(
    ("load", "concurrency", "rate", "message"),
    [
        ("closed", "1,x", None, "malformed"),
        ("closed", "0,2", None, "positive"),
        ("open", None, "-5", "positive"),
        ("bursty", None, None, "unknown load"),
    ],
)
def test_bad_load_plans_are_one_clear_line(load, concurrency, rate, message) -> None:
    with pytest.raises(ServeoffError, match=message):
        load_points(load, concurrency, rate, "poisson")


def test_results_of_another_schema_or_missing_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ServeoffError, match="does not exist"):
        read_results(tmp_path / "nope")
    (tmp_path / "results.json").write_text(json.dumps({"schema": "serveoff.results/0"}))
    with pytest.raises(ServeoffError, match=r"serveoff\.results/0"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": SCHEMA, "points": []}))
    assert read_results(tmp_path)["points"] == []


def test_serving_tax_subtracts_the_matching_baseline() -> None:
    def point(target: str, system: str, baseline: bool, p50: float, rps: float) -> dict:
        latency = {"p50": {"value": p50}, "p99": {"value": 2 * p50}}
        return {
            "model": "m", "target": target, "system": system, "baseline": baseline, "phase": "sweep",
            "load": {"loop": "closed", "concurrency": 1}, "label": "c=1",
            "summary": {"latency_us": latency, "throughput_rps": {"value": rps}},
        }  # fmt: skip

    points = [
        PointResult.from_json(point("torch:inprocess", "torch", True, 100, 1000)),
        PointResult.from_json(point("torchserve:rest", "torchserve", False, 400, 250)),
    ]
    (tax,) = serving_tax(points, {"torchserve": "torch", "tfserving": "tf"})
    assert tax["latency_us"] == {"p50": 300, "p99": 600}
    assert tax["throughput_ratio"] == pytest.approx(0.25)
    assert tax["baseline"] == "torch:inprocess"


def test_a_point_where_over_1pc_of_scheduled_requests_failed_or_went_unanswered_is_overloaded() -> None:
    served = [window([5.0] * 995, 0, errors=5), window([5.0] * 1000, 1)]
    for w in served:
        w.scheduled = w.requests + w.failed
    assert load_flags(served)["overloaded"] is False  # 5 of 2,000: within the bound
    behind = window([5.0] * 400, 2, errors=500)
    behind.unfinished, behind.scheduled = 100, 1000
    flags = load_flags([*served, behind])
    assert flags["overloaded"] is True and flags["generator_bound"] is False
    assert flags["overload"] == (
        "20.2% of 3,000 scheduled requests failed or unanswered (HTTP 503 x505, unfinished x100)"
    )
    assert estimate([*served, behind], batch_size=1)["scheduled"] == 3000


def test_a_point_whose_requests_were_sent_late_is_generator_bound() -> None:
    late = window([5.0] * 1000)
    late.scheduled, late.late_sends, late.send_lag_max_s = 1000, 11, 0.25
    flags = load_flags([late])
    assert flags["generator_bound"] is True and flags["overloaded"] is False
    assert flags["send_lag_max_ms"] == 250.0 and flags["late_sends"] == 11
    late.late_sends = 10
    assert load_flags([late])["generator_bound"] is False  # 1%: within the bound
    assert load_flags([])["overloaded"] is False  # a point stopped before its first window


def test_the_send_lag_p99_above_the_bound_makes_a_point_generator_bound() -> None:
    windows = []
    for index, late_us in enumerate((40_000, 15_000)):  # 1.5% of sends over 10 ms late, none 20 ms+ in one
        w = window([5.0] * 1000, index)
        w.scheduled, w.send_lag = 1000, new_histogram()
        for n in range(1000):
            record(w.send_lag, (late_us if n < 15 else 50) / 1e6)
        windows.append(w)
    assert load_flags(windows)["generator_bound"] is True
    lag = estimate(windows, batch_size=1)["send_lag_us"]
    assert lag["p50"] == pytest.approx(50, abs=1) and lag["max"] == pytest.approx(40_000, rel=0.001)
    back = [Window.from_json(w.to_json()) for w in windows]  # the histogram survives results.json
    assert estimate(back, batch_size=1)["send_lag_us"] == lag
    for w in windows:
        w.send_lag.reset()
        for n in range(1000):
            record(w.send_lag, (15_000 if n < 5 else 50) / 1e6)  # 0.5% late: p99 on time
    assert load_flags(windows)["generator_bound"] is False


def test_windows_of_older_results_files_read_back_without_the_new_counts() -> None:
    doc = window([5.0] * 10, errors=2).to_json()
    for field in ("scheduled", "late_sends", "queued", "send_lag_max_s", "send_lag_histogram"):
        del doc[field]
    old = Window.from_json(doc)
    assert old.scheduled is None and old.late_sends == 0 and old.send_lag is None
    assert estimate([old], batch_size=1)["send_lag_us"] == {"p50": None, "p99": None, "max": None}
    assert load_flags([old])["overloaded"] is True  # 2 of 12 (answered + failed) failed
    assert estimate([old], batch_size=1)["scheduled"] is None
