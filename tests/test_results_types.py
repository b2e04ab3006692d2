"""The typed point result: it reads what ``measure`` writes, back losslessly, and older schemas' entries.

No server runs here: the windows are built from recorded latencies, and the point entry is assembled the
way ``loadtest/measure.py`` assembles it (the statistics are the real ``estimate`` and ``load_flags``).
"""

from __future__ import annotations

import json
from pathlib import Path

from serveoff.loadtest.histograms import encode, merge, new_histogram, record
from serveoff.loadtest.results import SCHEMA, Estimate, PointResult
from serveoff.loadtest.stats import Window, estimate, load_flags, send_lag
from serveoff.report.runs import load_run
from serveoff.report.verdicts import notes


def _window(index: int, latencies_ms: list[float], errors: int = 0) -> Window:
    histogram = new_histogram()
    for ms in latencies_ms:
        record(histogram, ms / 1000)
    failed = {"HTTP 503": errors} if errors else {}
    return Window(index, 1.0, len(latencies_ms), failed, histogram, 0.2, server_cpu_s=0.5, scheduled=100)


def _entry() -> dict:
    """A current (/2) points[] entry, as measure.point_result builds it."""
    windows = [_window(i, [2.0 + i * 0.1] * 95 + [9.0] * 5, errors=i) for i in range(3)]
    return {
        "model": "digits-mlp", "target": "torchserve:rest", "system": "torchserve", "protocol": "rest",
        "baseline": False, "source": "torchserve 0.12.0", "phase": "sweep",
        "load": {"loop": "closed", "concurrency": 4}, "label": "c=4", "offered": 4.0, "batch_size": 1,
        "payload_bytes": 3210, "started_at": "2026-01-01T00:00:00+00:00", "stable": True,
        "generator_busy_max": 0.2, "client_bound": False, **load_flags(windows),
        "summary": estimate(windows, 1, seed=0), "histogram": encode(merge(w.histogram for w in windows)),
        "send_lag_histogram": encode(send_lag(windows)), "windows": [w.to_json() for w in windows],
        "error": None, "peak_rss_mib": 120.5, "server_metrics": {"delta": {"ts_inference_requests": 300.0}},
    }  # fmt: skip


def _older(entry: dict) -> dict:
    """The same entry as a /1 file has it: no send lag, no generator-bound flag, no scheduled counts."""
    old = {k: v for k, v in entry.items() if k not in ("send_lag_histogram", "generator_bound", "late_sends",
                                                       "queued_in_generator", "send_lag_max_ms")}  # fmt: skip
    old["summary"] = {k: v for k, v in entry["summary"].items() if k not in ("send_lag_us", "scheduled")}
    newer = ("scheduled", "late_sends", "queued", "send_lag_max_s", "send_lag_histogram")
    old["windows"] = [{k: v for k, v in w.items() if k not in newer} for w in entry["windows"]]
    return old


def test_a_current_entry_reads_typed_and_writes_back_unchanged() -> None:
    entry = json.loads(json.dumps(_entry()))  # as it comes back from the file
    point = PointResult.from_json(entry)
    assert point.summary is not None and point.summary.requests == 300
    p99 = point.summary.latency("p99")
    assert isinstance(p99, Estimate) and p99.value == entry["summary"]["latency_us"]["p99"]["value"]
    assert point.summary.failed == 3 and point.summary.errors == {"HTTP 503": 3}
    assert point.flags.stable and not point.flags.overloaded  # 3 of 300 failed: within the 1% bound
    assert point.summary.cpu_s_per_1000 is not None and point.summary.cpu_s_per_1000.value > 0
    assert [w.requests for w in point.decoded_windows()] == [100, 100, 100]
    assert point.to_json() == entry


def test_an_entry_of_schema_1_reads_with_the_fields_it_lacks_at_their_defaults() -> None:
    point = PointResult.from_json(json.loads(json.dumps(_older(_entry()))))
    assert point.summary is not None and point.summary.scheduled is None
    assert point.summary.send_lag_us.p99 is None and point.send_lag_histogram is None
    assert point.flags.generator_bound is False and point.flags.late_sends == 0
    assert [w.scheduled for w in point.decoded_windows()] == [None, None, None]
    assert point.summary.latency("p50").value is not None


def test_results_files_of_schema_1_and_2_load_for_the_report(tmp_path: Path) -> None:
    for schema, entry in (("serveoff.results/1", _older(_entry())), (SCHEMA, _entry())):
        run_dir = tmp_path / schema.replace("/", "-")
        run_dir.mkdir()
        doc = {"schema": schema, "run_id": run_dir.name, "status": "complete", "error": None,
               "manifest": {"plan": {"targets": ["torchserve:rest"]}}, "points": [entry]}  # fmt: skip
        (run_dir / "results.json").write_text(json.dumps(doc))
        run = load_run(run_dir)
        [point] = run.points
        assert point.target == "torchserve:rest" and point.summary.throughput_rps.value > 0
        assert any("Requests failed at: TorchServe REST c=4 0.99%" in line for line in notes(run, 0.05))
