"""Pinning that matches the fairness box: the load generator apart from the servers, the in-process
baselines' model threads on the servers' CPUs, each read back from the kernel by the test itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serveoff.errors import ServeoffError
from serveoff.serving.resources import loadgen_cpus, pinned, thread_affinities

TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to keep them apart")


def test_loadgen_cpus_are_every_cpu_the_servers_lack() -> None:
    assert loadgen_cpus((0,), None, (0, 1, 2, 3)).cpus == (1, 2, 3)
    assert loadgen_cpus((0,), None, (0, 1, 2, 3)).warning is None
    assert loadgen_cpus((1, 3), (2,), (0, 1, 2, 3)).cpus == (2,)


def test_loadgen_cpus_warn_in_one_line_when_they_must_overlap() -> None:
    alone = loadgen_cpus((0,), None, (0,))  # a 1-CPU machine
    assert alone.cpus == (0,)
    assert "shares the servers' CPUs" in alone.warning and "\n" not in alone.warning
    asked = loadgen_cpus((0, 1), (1,), (0, 1))
    assert asked.cpus == (1,) and "shares CPUs [1]" in asked.warning
    with pytest.raises(ServeoffError, match=r"--loadgen-cpus: CPUs \[7\] are not available here"):
        loadgen_cpus((0,), (7,), (0, 1))


@TWO_CPUS
def test_pinned_pins_every_thread_and_restores_them() -> None:
    before = thread_affinities()
    helper_started, stop = threading.Event(), threading.Event()
    helper = threading.Thread(target=lambda: (helper_started.set(), stop.wait(10)))
    helper.start()
    helper_started.wait(5)
    try:
        with pinned((1,)) as applied:
            assert applied == (1,)
            assert os.sched_getaffinity(helper.native_id) == {1}  # not only the calling thread
        assert {tid: thread_affinities().get(tid) for tid in before} == before
    finally:
        stop.set()
        helper.join()


INPROCESS = """
import json, os, sys, threading
from pathlib import Path
import numpy as np
import psutil
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.inprocess import inprocess_client
from serveoff.serving.resources import server_config, thread_affinities

layout = ArtifactLayout(Path(sys.argv[1]), "digits-mlp")
config = server_config("matched", cpus=(0,), threads=2)  # 2 intra-op threads: PyTorch starts one more
main_cpus = os.sched_getaffinity(0)
client = inprocess_client("torch:inprocess", layout, config)
batch = np.resize(np.load(layout.samples), (4096, *np.load(layout.samples).shape[1:])).astype(np.float32)
for _ in range(3):
    client.predict(batch)  # from the main thread: pinned to CPU 0 for each call only
main_back = os.sched_getaffinity(0) == main_cpus
before = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
done, release = threading.Event(), threading.Event()

def call():  # a load point's pool thread, kept alive until its affinity is read
    for _ in range(400):  # about 0.4 s of CPU on each of the two threads: far above the 0.02 s threshold
        client.predict(batch)
    done.set()
    release.wait(30)

caller = threading.Thread(target=call)
caller.start()
done.wait(60)
spent = {t.id: t.user_time + t.system_time - before.get(t.id, 0.0) for t in psutil.Process().threads()}
busy = [tid for tid, seconds in spent.items() if seconds > 0.02 and tid != os.getpid()]
affinities = thread_affinities()
print(json.dumps({"main_back": main_back, "caller": caller.native_id, "applied": client.applied_cpus(),
                  "busy": {str(tid): list(affinities[tid]) for tid in busy if tid in affinities}}))
release.set()
caller.join()
"""


@TWO_CPUS
def test_inprocess_model_threads_run_on_the_servers_cpus(built: dict) -> None:
    """Every thread that spent CPU running the model at a load point (the pool thread, PyTorch's intra-op
    threads it started) may run on CPU 0 only; the main thread (the event loop's), which loads the model
    and calls it pinned for the call, is back on its own CPUs afterwards. It runs in a process of its own,
    so that no thread another test left behind counts as busy."""
    done = subprocess.run([sys.executable, "-c", INPROCESS, str(built["digits-mlp"].root)],
                          timeout=120, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["main_back"] is True  # the main thread is back where it was
    assert len(found["busy"]) >= 2, found  # the caller and PyTorch's second intra-op thread ran the model
    assert found["busy"] == {tid: [0] for tid in found["busy"]}, found
    assert found["applied"] == [0]
    assert str(found["caller"]) in found["busy"]


GENERATOR = """
import json, sys
from pathlib import Path
from serveoff.loadtest.engine import LoadEngine  # locust patches this process first
from serveoff.loadtest.bench import Engines
from serveoff.loadtest.results import ResultsFile
from serveoff.serving.resources import loadgen_cpus, pinned

run = Path(sys.argv[1])
with pinned(loadgen_cpus((0,)).cpus):
    results = ResultsFile(run, "pinning", {"generator": {}})
    engines = Engines(1, None, run, "127.0.0.1", results)
    engine = engines.for_servers()
    print(json.dumps([p.pid for p in engine.processes()]), flush=True)
    sys.stdin.readline()
    engines.close()
"""


@TWO_CPUS
def test_generator_processes_run_apart_from_the_servers(tmp_path: Path) -> None:
    """The controller and its locust worker, servers on CPU 0: every thread of both is on the other CPUs,
    as the kernel says, and the manifest records the same."""
    others = sorted(set(os.sched_getaffinity(0)) - {0})
    proc = subprocess.Popen([sys.executable, "-c", GENERATOR, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 2  # the controller and one worker
        for pid in pids:
            for tid, cpus in thread_affinities(pid).items():
                assert list(cpus) == others, f"thread {tid} of process {pid} may run on {cpus}"
        manifest = json.loads((tmp_path / "results.json").read_text())["manifest"]
        recorded = {p["pid"]: p["cpus"] for p in manifest["generator"]["process_cpus"]}
        assert recorded == {pid: others for pid in pids}
    finally:
        proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
