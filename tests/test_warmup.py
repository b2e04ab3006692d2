"""The warm-up until settled: its slices, its floor and cap, and what results.json keeps of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serveoff.errors import ServeoffError
from serveoff.loadtest.plan import WindowPolicy


def test_the_warmup_runs_slices_from_the_floor_to_the_cap() -> None:
    windows = WindowPolicy(settle_slice_s=2.0, settle_floor_s=10.0, settle_cap_s=60.0).settle_windows()
    assert (windows.window_s, windows.min_windows, windows.max_windows, windows.warmup_s) == (2.0, 5, 30, 0.0)
    short = WindowPolicy(settle_slice_s=1.0, settle_floor_s=0.0, settle_cap_s=5.0).settle_windows()
    assert short.min_windows == 3  # never settled on fewer slices than agree (stable_windows)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (WindowPolicy(settle_floor_s=90, settle_cap_s=60), "--settle-floor 90 s is above --settle-cap 60 s"),
        (WindowPolicy(settle_slice_s=0.01), "--settle-slice 0.01 is too low"),
        (WindowPolicy(settle_cap_s=4000), "--settle-cap 4000 is too high"),
    ],
)
def test_a_bad_warmup_setting_is_one_clear_line(policy: WindowPolicy, message: str) -> None:
    with pytest.raises(ServeoffError, match=message):
        policy.validate()


SETTLE = """
import json, sys
from pathlib import Path
from serveoff.loadtest.engine import LoadEngine  # locust patches this process first
from serveoff.loadtest.calibrate import Responder
from serveoff.loadtest.measure import Subject
from serveoff.loadtest.plan import WindowPolicy, closed
from serveoff.loadtest.results import ResultsFile
from serveoff.loadtest.warmup import settle
from serveoff.serving.targets import Target

run = Path(sys.argv[1])
responder = Responder(run, None)
responder.start()
engine = LoadEngine(0)
request = {"kind": "rest", "address": responder.address, "path": "/", "body": b"{}", "headers": {}}
subject = Subject(Target("harness", "rest"), "m", request, 1, "a trivial responder")
results = ResultsFile(run, "warm", {"baseline_of": {}})
try:
    for tolerance in (0.5, 1e-9):  # agree at once / never agree
        policy = WindowPolicy(tolerance=tolerance, settle_slice_s=0.3, settle_floor_s=0.9, settle_cap_s=2.1)
        results.add_warmup(settle(engine, subject, closed(2), policy, timeout_s=5, seed=0))
finally:
    engine.close()
    responder.stop()
"""


def test_the_warmup_settles_or_stops_at_the_cap_and_is_recorded(tmp_path: Path) -> None:
    """Against a real endpoint: generous agreement settles at the floor; none at all runs to the cap."""
    subprocess.run([sys.executable, "-c", SETTLE, str(tmp_path)], check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    settled, capped = json.loads((tmp_path / "results.json").read_text())["warmups"]
    assert (settled["settled"], settled["capped"], len(settled["slices"])) == (True, False, 3)
    assert (capped["settled"], capped["capped"], len(capped["slices"])) == (False, True, 7)
    for warmup in (settled, capped):
        assert warmup["model"] == "m" and warmup["target"] == "harness:rest" and warmup["label"] == "c=2"
        assert all(s["p50_us"] > 0 and s["throughput_rps"] > 0 and s["failed"] == 0 for s in warmup["slices"])
    assert 0.9 <= settled["seconds"] < capped["seconds"] < 2.1 + 5
