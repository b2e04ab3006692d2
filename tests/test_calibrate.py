"""The harness calibration: the generator's own floor against a trivial local endpoint, in the manifest
and beside the servers' figures in the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from serveoff.report.harness import harness_view, markdown
from serveoff.report.runs import Run

CALIBRATE = """
import json, sys
from pathlib import Path
from serveoff.loadtest.engine import LoadEngine  # locust patches this process first
from serveoff.loadtest.calibrate import calibrate
from serveoff.serving.resources import loadgen_cpus, pinned

servers = (0,)
with pinned(loadgen_cpus(servers).cpus) as cpus:
    engine = LoadEngine(0)
    try:
        rest = {"body": b'{"instances": [[0.5, 0.25]]}', "headers": {"Content-Type": "application/json"}}
        found = calibrate(engine, rest, Path(sys.argv[1]), servers, cpus, 5.0)
    finally:
        engine.close()
print(json.dumps(found.to_json()))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to keep them apart")
def test_calibration_measures_the_generator_against_a_trivial_endpoint(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CALIBRATE, str(tmp_path)], check=True, timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    harness = json.loads(done.stdout.splitlines()[-1])
    assert harness["error"] is None
    assert 0 < harness["c1_p50_us"] <= harness["c1_p99_us"] < 50_000
    assert harness["c1_throughput_rps"] > 100
    # The most it sent, at whichever concurrency sent more (the one responder process can be the limit).
    assert harness["capacity_rps"] >= harness["c1_throughput_rps"] and harness["capacity_rps"] > 1000
    if harness["capacity_concurrency"] == 1:
        assert harness["capacity_rps"] == harness["c1_throughput_rps"]
    else:
        assert harness["capacity_concurrency"] == 32
    assert harness["responder_cpus"] == [0]  # on the servers' CPUs, read back
    assert 0 not in harness["generator_cpus"]
    assert harness["payload_bytes"] == len(b'{"instances": [[0.5, 0.25]]}')
    assert harness["seconds"] < 15  # short: a few seconds in all
    port = int(harness["endpoint"].rsplit(":", 1)[1])
    listening = [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                 and c.status == psutil.CONN_LISTEN]  # fmt: skip
    assert listening == []  # the responder was stopped


def _point(target: str, concurrency: int, p50_us: float, baseline: bool = False) -> dict:
    system, protocol = target.split(":")
    return {"model": "m", "target": target, "system": system, "protocol": protocol, "baseline": baseline,
            "source": f"{system} 1.0", "phase": "sweep", "label": f"c={concurrency}",
            "load": {"loop": "closed", "concurrency": concurrency},
            "summary": {"requests": 10, "latency_us": {"p50": {"value": p50_us}}}}  # fmt: skip


def test_the_report_shows_the_harness_floor_beside_each_c1_figure() -> None:
    harness = {"c1_p50_us": 200.0, "c1_p99_us": 400.0, "capacity_rps": 9000.0, "capacity_concurrency": 32,
               "generator_cpus": [1], "error": None}  # fmt: skip
    points = [_point("torchserve:rest", 1, 800.0), _point("torchserve:rest", 4, 2000.0),
              _point("torch:inprocess", 1, 100.0, baseline=True)]  # fmt: skip
    view = harness_view(Run(Path("."), {"manifest": {"harness": harness}, "points": points}))
    assert "p50 0.2 ms" in view.summary and "9,000 requests/s" in view.summary
    assert [(r.target, r.p50, r.share) for r in view.rows] == [("TorchServe REST", "0.8 ms", "25%")]
    assert "| m | TorchServe REST | 0.8 ms | 25% |" in markdown(view)
    assert harness_view(Run(Path("."), {"manifest": {}, "points": points})) is None  # calibration off
