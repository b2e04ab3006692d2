"""SIGINT, SIGTERM and SIGHUP stop a command like an interrupt: cleanups run, one line, exit 128 + signal.

The fast tests send real signals to this process (the handlers are restored after each) and to a small
gevent program; the end-to-end tests send them to a real `serveoff run` and `serveoff bench`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from serveoff.errors import Stopped
from serveoff.models.build import BuildResult
from serveoff.serving import fleet
from serveoff.signals import deferred, stop_on_signals
from tests.commands import SERVEOFF, leftovers


def test_a_signal_raises_stopped_with_the_shells_exit_code() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as caught, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here, long before the sleep ends
    assert caught.value.exit_code == 143 and str(caught.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


def test_a_signal_during_a_cleanup_waits_for_its_end_and_later_ones_are_ignored() -> None:
    cleaned = []
    with pytest.raises(Stopped) as caught, stop_on_signals():
        with deferred():
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGINT)  # a second signal while stopping: ignored
            time.sleep(0.2)
            cleaned.append("done")
        pytest.fail("the deferred signal is raised when the cleanup ends")
    assert cleaned == ["done"]
    assert caught.value.exit_code == 128 + signal.SIGHUP and caught.value.reason == "stopped by SIGHUP"


GEVENT_PROGRAM = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import os, signal, time
    import gevent
    from serveoff.errors import Stopped
    from serveoff.signals import stop_on_signals

    def busy():  # like locust's users: greenlets that run while the main greenlet waits
        while True:
            sum(range(1000))
            gevent.sleep(0)

    workers = [gevent.spawn(busy) for _ in range(3)]
    gevent.spawn_later(0.5, os.kill, os.getpid(), signal.SIG{name})
    try:
        with stop_on_signals():
            time.sleep(30)
    except Stopped as stop:
        print("caught", stop, stop.exit_code, all(not w.dead for w in workers))
    """
)


@pytest.mark.parametrize("name", ["TERM", "INT", "HUP"])
def test_under_gevent_the_main_greenlet_is_stopped_and_gevent_prints_nothing(name: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_PROGRAM.replace("{name}", name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    signum = getattr(signal, f"SIG{name}")
    assert done.stdout.strip() == f"caught stopped by SIG{name} {128 + signum} True", done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 20


@pytest.fixture(scope="module")
def digits_root(built: dict[str, BuildResult]) -> Path:
    return built["digits-mlp"].root


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what} never happened: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.1)


def points_of(results: Path) -> list:
    try:
        return json.loads(results.read_text())["points"]
    except (OSError, ValueError):
        return []


def test_sigterm_stops_a_real_run_mid_measurement_cleanly(digits_root, tmp_path, env, marker) -> None:
    artifacts = digits_root.parent
    args = ["run", "--server", "torchserve", "--no-baselines", "--artifacts", str(artifacts)]
    args += ["--workers", "1", "--out", str(tmp_path), "--run-id", "cut", "--concurrency", "1"]
    args += ["--warmup", "1", "--window", "2", "--min-windows", "4", "--max-windows", "8"]
    run = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_dir = tmp_path / "cut"
    try:
        wait_for(lambda: points_of(run_dir / "results.json"), run, "a first measured point")
        (server,) = fleet.read_state(run_dir / "servers.json")
        processes = fleet.processes_of(server)
        assert len(processes) >= 2  # TorchServe's Java frontend and a worker, at least
        time.sleep(2)  # well into the second point's windows
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    lines = err.decode().strip().splitlines()
    assert run.returncode == 143, lines[-5:]
    assert lines[-1] == f"serveoff: stopped by SIGTERM; partial results saved in {run_dir / 'results.json'}"
    assert "Traceback" not in err.decode() and "KeyboardInterrupt" not in err.decode()
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["status"] == "partial" and saved["error"] == "stopped by SIGTERM"
    assert saved["points"][0]["summary"]["requests"] > 0  # what was measured is kept
    assert "This run is partial" in (run_dir / "report.md").read_text()
    assert f"report: {run_dir / 'report.html'}" in out.decode()
    assert [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
    assert leftovers(marker) == [], "TorchServe or the locust worker outlived the run"
    assert not (run_dir / "servers.json").exists()


def test_sigint_stops_a_bench_with_one_line_and_no_bare_keyboard_interrupt(
    digits_root, tmp_path, env, marker
) -> None:
    args = ["bench", "--target", "torch:inprocess", "--model", "digits-mlp"]
    args += ["--artifacts", str(digits_root.parent), "--state", str(tmp_path / "none.json")]
    args += ["--out", str(tmp_path), "--run-id", "int", "--concurrency", "1,2"]
    args += ["--warmup", "0.5", "--window", "1", "--min-windows", "30", "--max-windows", "30"]
    bench = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = tmp_path / "int" / "results.json"
    try:
        wait_for(results.is_file, bench, "the results file")
        time.sleep(3)  # mid-measurement of the first point
        bench.send_signal(signal.SIGINT)
        _, err = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
    text = err.decode()
    assert bench.returncode == 130, text[-2000:]
    assert text.strip().splitlines()[-1] == f"serveoff: stopped by SIGINT; partial results saved in {results}"
    assert "KeyboardInterrupt" not in text and "Traceback" not in text, text[-2000:]
    saved = json.loads(results.read_text())
    assert saved["status"] == "partial" and saved["error"] == "stopped by SIGINT"
    assert (tmp_path / "int" / "report.html").is_file()
    assert leftovers(marker) == []


def test_sigterm_stops_a_build_and_leaves_nothing_half_written(tmp_path, env) -> None:
    args = [str(SERVEOFF), "build", "--model", "resnet50-tiny", "--out", str(tmp_path)]
    build = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in build.stderr:  # the build's progress lines
            if "training" in line:
                break
        build.send_signal(signal.SIGTERM)
        _, err = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "serveoff: stopped by SIGTERM"
    assert list(tmp_path.iterdir()) == [], "no staging directory or half-built model is left"
