"""`serveoff probe` against the TF Serving test double (the real binary cannot run here), labelled as such.

The double is killed by the process-failure probe: the run must still finish, bounded, and say that the
server did not recover by itself. Its rollout is a new version directory, which the double loads as TF
Serving's file-system poll does. The battery runs once for the module, with probes of a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serveoff.loadtest.probes.schema import PROBES, read_probes
from serveoff.report.readiness import judge_probe, markdown_lines, readiness_view
from tests.commands import serveoff


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
    cases = {c["case"]: c for c in probes["bad_input"]["cases"]}
    assert cases["malformed body"]["status"] == "400" and cases["unknown model"]["status"] == "404"
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


def test_probe_rejects_a_bad_duration(env) -> None:
    done = serveoff(["probe", "--soak-s", "0"], env, timeout=60)
    assert done.returncode == 2
    assert "--soak-s 0 is out of range" in done.stderr
