"""The load generator's core against a fake target: LoadEngine + measure() on real HTTP on 127.0.0.1.

The target is ``tests/http_responder.py``, a fixed reply with a chosen status, delay or connection
close: a real server cannot be made to misbehave on cue. The engine runs in a subprocess, as locust
monkey-patches the process it runs in; it prints one JSON line per scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from serveoff.loadtest.histograms import decode
from serveoff.loadtest.plan import closed, open_loop
from serveoff.loadtest.spec import InProcess, LoadSpec

RESPONDER = Path(__file__).with_name("http_responder.py")

SCENARIOS = """
import json, subprocess, sys
from serveoff.loadtest.engine import LoadEngine  # locust patches this process first
from serveoff.loadtest.measure import PointAborted, Subject, measure
from serveoff.loadtest.plan import WindowPolicy, closed, open_loop
from serveoff.serving.process import free_port_base
from serveoff.serving.targets import Target

def run(name, engine, point, status=200, delay=0.0, close=0, timeout_s=2.0, windows=2, window_s=0.5):
    server = subprocess.Popen([sys.executable, sys.argv[1], str(status), str(delay), str(close)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        request = {"kind": "rest", "address": f"http://127.0.0.1:{port}", "path": "/", "body": b"{}",
                   "headers": {"Content-Type": "application/json"}}
        subject = Subject(Target("fake", "rest"), "m", request, 1, "a test responder")
        policy = WindowPolicy(warmup_s=0.3, window_s=window_s, min_windows=windows, max_windows=windows)
        try:
            result = measure(engine, subject, point, policy, timeout_s=timeout_s, seed=1)
        except PointAborted as err:
            result = err.result
        result["locust_requests"] = engine.environment.stats.total.num_requests
        print(json.dumps({"scenario": name, "result": result}), flush=True)
    finally:
        server.kill()
        server.wait()

engine = LoadEngine(0)
try:
    run("closed", engine, closed(2), windows=3, window_s=0.4)
    run("open", engine, open_loop(200, "constant"))
    run("503", engine, closed(1), status=503, windows=1)
    run("close", engine, closed(2), close=1)
    run("timeout", engine, closed(1), delay=1.0, timeout_s=0.2, windows=1)
finally:
    engine.close()
ui = LoadEngine(0, ui_port=free_port_base(1))
try:
    run("ui", ui, closed(1), windows=1)
finally:
    ui.close()
"""


@pytest.fixture(scope="module")
def scenarios() -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", SCENARIOS, str(RESPONDER)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["scenario"]: line["result"] for line in lines}


def settled(window: dict) -> int:
    return window["requests"] + sum(window["errors"].values()) + window["unfinished"]


def test_a_closed_loop_counts_every_request_and_merges_the_windows(scenarios) -> None:
    point = scenarios["closed"]
    assert len(point["windows"]) == 3 and point["summary"]["failed"] == 0
    for window in point["windows"]:
        assert window["requests"] > 50 and settled(window) == window["scheduled"], window
    merged = decode(point["histogram"])
    assert merged.get_total_count() == sum(w["requests"] for w in point["windows"]) > 150
    assert point["summary"]["send_lag_us"] == {"p50": None, "p99": None, "max": None}  # sent at once
    assert point["locust_requests"] == 0  # no web UI: locust's request event never fired


def test_an_open_loop_keeps_its_schedule_and_records_a_small_send_lag(scenarios) -> None:
    point = scenarios["open"]
    for window in point["windows"]:
        assert window["scheduled"] == 100 and settled(window) == 100, window  # 200/s, constant, 0.5 s
        assert window["errors"] == {} and decode(window["send_lag_histogram"]).get_total_count() == 100
    lag = point["summary"]["send_lag_us"]
    assert 0 < lag["p50"] <= lag["p99"] <= lag["max"]
    assert lag["p50"] < 1000, lag  # sent on time: well under a millisecond late at this light load
    assert decode(point["send_lag_histogram"]).get_total_count() == 200
    assert point["summary"]["latency_us"]["p50"]["value"] < 5000


def test_an_http_503_is_counted_by_its_status(scenarios) -> None:
    (window,) = scenarios["503"]["windows"]
    assert window["requests"] == 0 and window["errors"]["HTTP 503"] == window["scheduled"] > 10


def test_a_server_that_closes_each_connection_is_connected_to_again(scenarios) -> None:
    point = scenarios["close"]
    assert point["summary"]["failed"] == 0, point["summary"]["errors"]
    assert all(w["requests"] > 20 for w in point["windows"])


def test_a_request_past_its_timeout_counts_as_timeout(scenarios) -> None:
    (window,) = scenarios["timeout"]["windows"]
    assert window["requests"] == 0 and window["errors"] == {"timeout": window["scheduled"]}
    assert 1 <= window["scheduled"] <= 3  # 0.5 s of 0.2 s timeouts, one user


def test_with_the_web_ui_on_locust_sees_every_request(scenarios) -> None:
    point = scenarios["ui"]
    assert point["locust_requests"] >= point["summary"]["requests"] > 10


def test_a_load_spec_survives_locusts_message_encoding() -> None:
    how = InProcess("torch", "m", "/a", {"threads": 1}, 2, "float32", (1, 784))
    for load, extra in ((closed(4), {}), (open_loop(50.0, "constant"), {"inprocess": how})):
        spec = LoadSpec(
            kind="rest", address="http://127.0.0.1:1", path="/p", body=b"\x00\xff{}", headers={"A": "b"},
            id="x/1", name="m t c=4", load=load, users=4, window_s=1.0, max_windows=3, timeout_s=2.0,
            seed=7, **extra,
        )  # fmt: skip
        wire = msgpack.loads(msgpack.dumps(spec.to_message(), use_bin_type=True), raw=False)
        assert LoadSpec.from_message(wire) == spec
