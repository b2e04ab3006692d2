"""`serveoff probe` against the TF Serving test double (the real binary cannot run here), labelled as such.

The double is killed by the process-failure probe: the run must still finish, bounded, and say that the
server did not recover by itself. Stalled (SIGSTOP) through a soak, it never hangs the probe either.
Its rollout is a new version directory, which the double loads as TF Serving's file-system poll does.
The battery runs once for the module, with probes of a few seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from serveoff.loadtest.probes.schema import PROBES, read_probes
from serveoff.report.readiness import judge_probe, markdown_lines, readiness_view
from tests.commands import SERVEOFF, serveoff


@pytest.fixture(scope="module")
def probe_run(built, artifacts_dir: Path, env, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probes")
    args = ["probe", "--server", "tfserving", "--model", "digits-mlp", "--artifacts", str(artifacts_dir),
            "--overload-s", "2", "--soak-s", "3", "--failure-s", "3", "--update-s", "4", "--out", str(out)]
    done = serveoff(args, env, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    return next(out.glob("*/probes.json")).parent


def test_every_probe_runs_on_the_double_labelled(probe_run: Path) -> None:
    doc = json.loads((probe_run / "probes.json").read_text())
    assert doc["schema"] == "serveoff.probes/1"
    probes = {r["probe"]: r for r in doc["results"]}
    assert set(probes) == set(PROBES)
    assert all(r["test_double"] and "serveoff-test-" in r["source"] for r in doc["results"])
    assert probes["cold_start"]["figures"]["first_answer_s"] > 0
    assert probes["overload"]["figures"]["capacity_rps"] > 0
    every = probes["bad_input"]["cases"]
    assert {c["protocol"] for c in every} == {"rest", "grpc"}  # each protocol the server speaks
    cases = {c["case"]: c for c in every if c["protocol"] == "rest"}
    assert cases["malformed body"]["status"] == "400" and cases["unknown model"]["status"] == "404"
    grpc = {c["case"]: c for c in every if c["protocol"] == "grpc"}
    assert grpc["unknown model"]["status"] == "NOT_FOUND" and grpc["wrong dtype"]["refused"] is True
    assert grpc["wrong content type"]["status"] == "not applicable"  # gRPC has no content type to get wrong
    assert [line.split(":")[0] for line in probes["bad_input"]["findings"]] == ["rest", "grpc"]
    rollout = probes["model_update"]["figures"]  # the double polls its base path as TF Serving does
    assert rollout["supported"] is True and "2" in rollout["versions_seen"].split(", ")
    killed = probes["process_failure"]["figures"]  # nothing restarts the killed double, and nothing hangs
    assert killed["recovered"] is False and killed["failed_requests"] > 0


def test_the_readiness_section_and_claims_read_probes_json(probe_run: Path) -> None:
    view = readiness_view(probe_run)
    assert view is not None and len(view.rows) == len(PROBES)
    assert {name for name, _ in view.plots} >= {"readiness-overload", "readiness-rollout"}
    assert "test double" in "\n".join(markdown_lines(view))
    status, reason, _ = judge_probe({"probe_zero": "tfserving", "probe": "model_update",
                                     "figure": "failed_requests"}, probe_run)  # fmt: skip
    assert status == "not testable" and "test double" in reason
    assert read_probes(probe_run.parent) is None  # a directory without probes.json has no section


@pytest.mark.parametrize(("args", "line"), [
    (["--soak-s", "0"], "--soak-s 0 is out of range"),
    (["--probe", "speed"], "--probe speed is not a probe; name one of cold_start, bad_input"),
])  # fmt: skip
def test_probe_rejects_a_bad_option_before_anything_starts(args, line, env) -> None:
    done = serveoff(["probe", *args], env, timeout=60)
    assert done.returncode == 2
    assert line in done.stderr and "Traceback" not in done.stderr


def test_only_the_named_probes_run_after_the_cold_start(built, artifacts_dir: Path, env, tmp_path) -> None:
    args = ["probe", "--server", "tfserving", "--model", "digits-mlp", "--artifacts", str(artifacts_dir),
            "--probe", "soak", "--soak-s", "2", "--out", str(tmp_path)]  # fmt: skip
    done = serveoff(args, env, timeout=200)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(next(tmp_path.glob("*/probes.json")).read_text())
    assert [r["probe"] for r in doc["results"]] == ["cold_start", "soak"]
    assert doc["settings"]["probes"] == "soak" and doc["settings"]["launcher"] == "native"


def test_a_stalled_server_never_hangs_a_probe(built, artifacts_dir: Path, env, tmp_path) -> None:
    """The double is stopped (SIGSTOP) for the whole soak: the probe still ends within its bounds, says
    that nothing was answered, and stops the server (stopped or not)."""
    args = ["probe", "--server", "tfserving", "--model", "digits-mlp", "--artifacts", str(artifacts_dir),
            "--probe", "soak", "--soak-s", "4", "--out", str(tmp_path)]  # fmt: skip
    probe = subprocess.Popen([str(SERVEOFF), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stalled: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/probes.json")):
            assert probe.poll() is None and time.monotonic() < deadline, probe.stderr.read().decode()[-2000:]
            time.sleep(0.05)  # the cold start is written: the soak begins
        # the server itself, not a `--version` call that reads its version
        stalled = [p for p in psutil.Process(probe.pid).children(recursive=True)
                   if "tensorflow_model_server" in " ".join(p.cmdline()) and "--version" not in p.cmdline()]
        for proc in stalled:
            proc.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        _, stderr = probe.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if probe.poll() is None:
            probe.kill()
        for proc in stalled:
            if proc.is_running():
                proc.send_signal(signal.SIGCONT)
    assert probe.returncode == 0, stderr.decode()[-3000:]
    assert stalled and took < 4 + 2 * 5 + 30, took  # the soak, the requests' timeouts and the stop
    doc = json.loads(next(tmp_path.glob("*/probes.json")).read_text())
    soak = next(r for r in doc["results"] if r["probe"] == "soak")
    # the closed loop's first requests never return, so no window counts them: the probe says so
    assert soak["figures"]["requests"] == 0 and "no request was answered" in soak["error"], soak
    assert [p.pid for p in stalled if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
