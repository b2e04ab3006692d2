"""`serveoff bench` and `serveoff run`, end to end: real locust, real TorchServe, real in-process baselines.

The TF Serving arm runs against ``tests/fakes/tensorflow_model_server`` (TF Serving's own binary cannot
be installed here); its version says it is a fake, and the results manifest records that version.
The command runs in a subprocess, as users run it: locust monkey-patches the process it runs in.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serveoff.loadtest.histograms import decode
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.serving import fleet
from serveoff.serving.metrics import scrape
from serveoff.serving.process import free_port_base, read_tail
from serveoff.serving.resources import server_config
from serveoff.serving.torchserve.server import TorchServe
from tests.commands import QUICK, SERVEOFF, leftovers, serveoff

ALL_TARGETS = ["torchserve:rest", "torchserve:grpc", "tfserving:rest", "tfserving:grpc"]
ALL_TARGETS += ["torch:inprocess", "tf:inprocess"]


@pytest.fixture(scope="module")
def digits(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built["digits-mlp"].root, "digits-mlp")


def start(names: list[str], digits: ArtifactLayout, workdir: Path, env: dict[str, str]) -> Path:
    """Start servers like `serveoff up` does (on free ports) and return their state file."""
    state = workdir / "servers.json"
    bases = {"torchserve": free_port_base(5), "tfserving": free_port_base(2)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", env["PATH"])
        fleet.start_servers(names, [digits], server_config("matched"), workdir / "work", state, bases)
    return state


@pytest.fixture(scope="module")
def servers(digits, tmp_path_factory, env) -> Iterator[Path]:
    """TorchServe and the TF Serving fake, serving digits-mlp, recorded in a state file."""
    state = start(["torchserve", "tfserving"], digits, tmp_path_factory.mktemp("servers"), env)
    yield state
    fleet.stop_servers(state)


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_bench_measures_every_target_into_a_complete_results_file(servers, tmp_path, env) -> None:
    args = [
        "bench",
        "--state",
        str(servers),
        "--out",
        str(tmp_path),
        "--run-id",
        "all",
        "--concurrency",
        "1,2",
    ]
    for target in ALL_TARGETS:
        args += ["--target", target]
    done = serveoff(args + QUICK, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results: {tmp_path / 'all' / 'results.json'}" in done.stdout.splitlines()
    results = results_of(tmp_path / "all")
    assert results["schema"] == "serveoff.results/3" and results["status"] == "complete"
    # the report names systems as the run recorded them, not as the code of the day would
    assert results["manifest"]["systems"]["torchserve"]["title"] == "TorchServe"
    assert results["manifest"]["systems"]["torch"] == {"title": "in-process PyTorch", "status": None}
    points = results["points"]
    assert len(points) == 12
    # Drift control: every target at c=1, then every target at c=2 in the reverse order.
    assert [p["target"] for p in points] == ALL_TARGETS + ALL_TARGETS[::-1]
    assert [p["label"] for p in points] == ["c=1"] * 6 + ["c=2"] * 6

    for point in points:
        summary = point["summary"]
        assert summary["failed"] == 0, point["target"]
        assert 2 <= summary["windows"] == len(point["windows"]) <= 3
        assert sum(w["requests"] for w in point["windows"]) == summary["requests"] > 0
        assert decode(point["histogram"]).get_total_count() == summary["requests"]
        for name in ("p50", "p90", "p95", "p99", "p99.9"):
            stat = summary["latency_us"][name]
            assert 0 < stat["low"] <= stat["value"] <= stat["high"], (point["target"], name)
        assert summary["latency_us"]["max"]["value"] >= summary["latency_us"]["p99.9"]["value"]
        assert 0 <= point["generator_busy_max"] < 1 and point["client_bound"] is False
        if point["baseline"]:
            assert summary["cpu_s_per_1000"] is None and point["server_metrics"] is None
        else:
            assert summary["cpu_s_per_1000"]["value"] > 0
            assert point["peak_rss_mib"] > 10
            assert point["server_metrics"]["delta"], point["target"]

    taxes = results["serving_tax"]
    assert len(taxes) == 8
    assert {t["baseline"] for t in taxes if t["target"].startswith("torchserve")} == {"torch:inprocess"}
    assert {t["baseline"] for t in taxes if t["target"].startswith("tfserving")} == {"tf:inprocess"}

    manifest = results["manifest"]
    assert manifest["servers"]["torchserve"]["versions"]["torchserve"] == "0.12.0"
    assert (
        manifest["servers"]["tfserving"]["versions"]["TensorFlow ModelServer"] == "0.0.0-serveoff-test-fake"
    )
    assert manifest["drift_control"]["method"] == "interleaved"
    assert manifest["machine"]["cpu_model"] and manifest["libraries"]["locust"] == "2.47.0"
    assert manifest["serveoff"]["commit"]
    # Every point and every printed line says where its numbers came from; the fake's say it is one.
    for point in points:
        fake = point["system"] == "tfserving"
        assert ("0.0.0-serveoff-test-fake" in point["source"]) == fake, point["source"]
    assert {p["source"] for p in points if p["baseline"]} == {
        "in-process torch 2.13.0+cpu",
        "in-process tf 2.21.0",
    }
    started = [line for line in done.stderr.splitlines() if ": loaded in " in line]
    assert len(started) == 2 and len(results["runtimes"]) == 2  # each runtime's start, before any point
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("digits-mlp ") and " req/s " in ln]
    assert len(lines) == 12 and all(
        ("tfserving 0.0.0-serveoff-test-fake" in ln) == (" tfserving:" in ln) for ln in lines
    )
    payload = manifest["fairness"]["payload_bytes"]
    assert payload["torchserve:rest"] == payload["tfserving:rest"]  # the same JSON body, byte for byte


def test_open_loop_across_locust_workers_keeps_the_schedule_and_shows_the_ui(
    servers, tmp_path, env, marker
) -> None:
    ui_port = free_port_base(1)
    args = ["bench", "--state", str(servers), "--out", str(tmp_path), "--run-id", "open", "--workers", "2"]
    args += ["--load", "open", "--rate", "40", "--arrival", "constant", "--target", "torchserve:grpc"]
    args += ["--target", "torch:inprocess", "--warmup", "1", "--window", "1", "--min-windows", "2"]
    args += ["--max-windows", "2", "--ui", "--ui-port", str(ui_port), "--settle-cap", "0", "--no-calibrate"]
    bench = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 120
        while bench.poll() is None and time.monotonic() < deadline:
            try:
                stats = requests.get(f"http://127.0.0.1:{ui_port}/stats/requests", timeout=2).json()
                seen |= {row["name"] for row in stats["stats"] if row["num_requests"]}
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        _, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, stderr.decode()[-3000:]
    assert "digits-mlp torchserve:grpc r=40/s" in seen  # locust's own web UI showed the load live
    served, baseline = results_of(tmp_path / "open")["points"]
    for window in served["windows"]:
        assert window["generators"] == 2  # merged from both workers
        assert 36 <= window["requests"] <= 44  # 2 x 20/s, constant arrivals
    assert all(w["generators"] == 1 for w in baseline["windows"])  # baselines stay in one process
    assert leftovers(marker) == []


def test_search_finds_the_highest_rate_under_the_p99_bound(servers, tmp_path, env) -> None:
    args = ["bench", "--state", str(servers), "--out", str(tmp_path), "--run-id", "search"]
    args += ["--load", "search", "--target", "torchserve:rest", "--p99-bound-ms", "2000"]
    windows = ["--warmup", "0.5", "--window", "1", "--min-windows", "2", "--max-windows", "2"]
    windows += ["--settle-cap", "0"]
    done = serveoff([*args, "--no-calibrate", "--start-rate", "20", "--max-probes", "3", *windows], env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(tmp_path / "search")
    (search,) = results["searches"]
    rates = [p["rate"] for p in search["probes"]]
    assert search["p99_bound_ms"] == 2000
    assert [p["phase"] for p in results["points"]] == ["search"] * len(rates)
    if rates != [20, 40, 80]:  # a busy shared machine made the generator late: the search says so and stops
        last = search["probes"][-1]
        assert rates == [20, 40, 80][: len(rates)] and (last["generator_bound"] or last["client_bound"])
        assert "the load generator was saturated" in search["note"]
        return
    assert search["max_rate"] == 80 and search["note"] is None


def test_open_loop_shows_a_200ms_stall_in_the_tail_of_the_queued_requests(servers, tmp_path, env) -> None:
    (record,) = [r for r in fleet.read_state(servers) if r.server == "torchserve"]

    def served() -> float:
        return sum(v for k, v in scrape(record.endpoints.metrics).items() if "ts_inference_requests" in k)

    before = served()
    args = ["bench", "--state", str(servers), "--out", str(tmp_path), "--run-id", "stall", "--load", "open"]
    args += ["--rate", "100", "--arrival", "constant", "--target", "torchserve:rest", "--warmup", "1"]
    args += ["--window", "1.5", "--min-windows", "3", "--max-windows", "3"]
    args += ["--settle-cap", "0", "--no-calibrate"]
    bench = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while served() < before + 20:  # the load (its warm-up) has begun
            assert bench.poll() is None and time.monotonic() < deadline, bench.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        time.sleep(1.0 + 0.5 + 1.5)  # rest of the warm-up and spawn margin, then into the second window
        processes = fleet.processes_of(record)
        for proc in processes:
            proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        for proc in processes:
            proc.send_signal(signal.SIGCONT)
        _, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, stderr.decode()[-3000:]
    (point,) = results_of(tmp_path / "stall")["points"]
    histogram = decode(point["histogram"])
    slow = sum(
        item.count_at_value_iterated_to
        for item in histogram.get_recorded_iterator()
        if item.value_iterated_to >= 100_000
    )
    # ~20 requests were scheduled during the stall: the queue behind it shows, not one slow request.
    assert slow >= 8, slow
    assert histogram.get_max_value() >= 180_000
    assert point["summary"]["latency_us"]["p50"]["value"] < 50_000


def test_a_server_killed_mid_run_leaves_partial_results_and_nothing_running(
    digits, tmp_path, env, marker
) -> None:
    state = start(["torchserve"], digits, tmp_path / "own", env)
    (record,) = fleet.read_state(state)
    args = ["bench", "--state", str(state), "--out", str(tmp_path), "--run-id", "killed", "--workers", "1"]
    args += ["--target", "torchserve:rest", "--concurrency", "1,2,4,8,16", *QUICK]
    bench = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = tmp_path / "killed" / "results.json"
    try:
        deadline = time.monotonic() + 120
        while not (results.is_file() and json.loads(results.read_text())["points"]):
            assert bench.poll() is None and time.monotonic() < deadline, bench.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        for proc in fleet.processes_of(record):
            proc.kill()
        _, stderr = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
        fleet.stop_servers(state)
    text = stderr.decode()
    assert bench.returncode != 0
    (line,) = [line for line in text.splitlines() if line.startswith("serveoff: error: ")]
    assert "torchserve is no longer running" in line and "partial results saved in" in line, text[-3000:]
    # the server's own last output follows: what it said before it died (TorchServe's log)
    assert "torchserve's last output:" in text.split(line, 1)[1], text[-3000:]
    assert read_tail(TorchServe.log_file(Path(record.log)), 3).splitlines()[-1] in text
    saved = json.loads(results.read_text())
    assert saved["status"] == "partial" and "torchserve" in saved["error"]
    assert saved["points"][0]["summary"]["requests"] > 0 and saved["points"][0]["error"] is None
    assert saved["points"][-1]["error"] == saved["error"]
    assert "This run is partial" in (tmp_path / "killed" / "report.md").read_text()  # what was measured
    assert leftovers(marker) == []


def test_run_builds_starts_measures_and_stops_everything(
    artifacts_dir, digits, tmp_path, env, marker
) -> None:
    args = ["run", "--server", "torchserve", "--no-baselines", "--artifacts", str(artifacts_dir)]
    args += ["--out", str(tmp_path), "--run-id", "run", "--concurrency", "2", *QUICK]
    done = serveoff(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(tmp_path / "run")
    assert results["status"] == "complete"
    assert [p["target"] for p in results["points"]] == ["torchserve:rest", "torchserve:grpc"]
    assert not (tmp_path / "run" / "servers.json").exists()
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "report.md").is_file()
    assert leftovers(marker) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--target", "torchserve:soap"], "unknown target 'torchserve:soap'"),
        (["bench", "--state", "{tmp}/none.json"], "no server recorded in"),
        (["bench", "--target", "torch:inprocess", "--concurrency", "0"], "must list positive numbers"),
        (["bench", "--target", "tfserving:rest", "--state", "{tmp}/none.json"], "needs a running tfserving"),
        (["bench", "--target", "torch:inprocess", "--min-windows", "5", "--max-windows", "2"], "min-windows"),
        (["run", "--server", "tfserving"], "tensorflow_model_server (TF Serving) is not on PATH"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, tmp_path, env) -> None:
    env = env | {"PATH": str(Path(sys.executable).parent)}  # no fake: like a machine without TF Serving
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = serveoff(
        [*args, "--out", str(tmp_path / "results"), "--artifacts", str(tmp_path)], env, timeout=120
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert lines[-1].startswith("serveoff: error: ") and message in lines[-1], done.stderr[-2000:]
    assert len(lines) == 1, done.stderr[-2000:]


def test_an_open_loop_far_above_capacity_accounts_for_every_request_and_is_flagged(
    servers, tmp_path, env
) -> None:
    # TorchServe serves digits-mlp at a few hundred requests/s here: 5,000/s is far beyond it (and beyond
    # one generator process), so arrivals queue in the generator and TorchServe answers 503 when full.
    rate, windows = 5000, 2
    args = ["bench", "--state", str(servers), "--out", str(tmp_path), "--run-id", "over", "--timeout", "2"]
    args += ["--load", "open", "--rate", str(rate), "--arrival", "constant", "--target", "torchserve:rest"]
    args += ["--warmup", "0.5", "--window", "1", "--min-windows", str(windows), "--max-windows", str(windows)]
    args += ["--settle-cap", "0", "--no-calibrate"]
    done = serveoff(args, env, timeout=120)
    results = results_of(tmp_path / "over")
    (point,) = results["points"]
    measured = point["windows"]
    # A window in which TorchServe answered none (on a busy machine) ends the run, as documented.
    if done.returncode:
        assert "none was answered" in done.stderr.splitlines()[-1] and results["status"] == "partial"
        assert len(measured) >= 1, done.stderr[-3000:]
    else:
        assert len(measured) == windows and results["status"] == "complete"
        (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("digits-mlp torchserve:rest ")]
        assert "r=5000/s" in line and "OVERLOADED" in line
        assert "serveoff: warning: digits-mlp torchserve:rest r=5000/s was overloaded" in done.stderr
    for window in measured:
        settled = window["requests"] + sum(window["errors"].values()) + window["unfinished"]
        assert settled == window["scheduled"], window
    scheduled = rate * len(measured)  # constant arrivals: exactly this many in the measured 1 s windows
    summary = point["summary"]
    accounted = summary["requests"] + summary["failed"]
    assert abs(accounted - scheduled) <= 0.01 * scheduled, (accounted, summary["errors"])
    assert summary["failed"] > 0.5 * scheduled, summary["errors"]  # far above capacity: most cannot be served
    assert point["overloaded"] is True and "failed or unanswered" in point["overload"]
