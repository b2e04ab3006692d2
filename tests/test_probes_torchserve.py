"""The rollout, then the process failure, on real TorchServe, in the battery's order.

After a rollout TorchServe keeps the old version's worker running beside the new one's: the failure
probe must kill the worker that answers (the default version's), not the idle one, or it fails nothing
and reports a recovery that never happened. The probes run in a subprocess: locust monkey-patches the
process it runs in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

from serveoff.models.build import BuildResult

MODEL = "digits-mlp"
SCENARIO = """
import json, sys
from pathlib import Path
from serveoff.loadtest.engine import LoadEngine  # locust patches this process first
from serveoff.loadtest.probes.context import Probed, ProbeSettings
from serveoff.loadtest.probes.failure import process_failure
from serveoff.loadtest.probes.servers import probe_class, probe_module
from serveoff.loadtest.probes.update import model_update
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import server_config

root, workdir = Path(sys.argv[1]), Path(sys.argv[2])
cls, module = probe_class("torchserve"), probe_module("torchserve")
layout = ArtifactLayout(root, "digits-mlp")
server = cls([layout], server_config("matched", cpus=(0,)), workdir, free_port_base(cls.port_count))
engine = LoadEngine()
found = {}
try:
    server.start(timeout=180.0)
    probed = Probed(server, layout, "rest", ProbeSettings(update_s=3.0, failure_s=12.0), engine)
    found["rollout"] = model_update(probed).figures
    found["serving"] = module.serving_pids(server, layout)
    found["workers"] = [p.pid for p in server.processes() if "model_service_worker" in " ".join(p.cmdline())]
    found["failure"] = process_failure(probed).figures
    found["serving_after"] = module.serving_pids(server, layout)
    found["version_after"] = module.serving_version(server, layout)
    found["pids"] = server.pids()
finally:
    engine.close()
    server.stop()
print(json.dumps(found))
"""


def test_the_failure_after_a_rollout_kills_the_worker_that_answers(
    built: dict[str, BuildResult], tmp_path: Path
) -> None:
    done = subprocess.run([sys.executable, "-c", SCENARIO, str(built[MODEL].root), str(tmp_path)],
                          timeout=400, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["rollout"]["failed_requests"] == 0 and found["rollout"]["versions_seen"].endswith("2.0")
    assert len(found["serving"]) == 1 and len(found["workers"]) == 2, found  # version 1.0's worker still runs
    failure = found["failure"]
    assert failure["killed_pid"] == found["serving"][0], found
    assert failure["recovered"] is True, failure  # TorchServe restarts a dead worker by itself
    assert failure["recovery_s"] > 0, failure  # the one worker that answered was gone for a while
    assert len(found["serving_after"]) == 1 and found["serving_after"] != found["serving"], found
    assert found["version_after"] == "2.0"
    assert [pid for pid in found["pids"] if psutil.pid_exists(pid)] == []  # stopped, nothing left
