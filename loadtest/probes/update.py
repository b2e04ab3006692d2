"""Model update under load: a new version rolls out while a closed loop runs; errors, spikes, versions."""

from __future__ import annotations

import time

from serveoff.loadtest.plan import closed
from serveoff.loadtest.probes.context import Probed, timeline
from serveoff.loadtest.probes.schema import ProbeResult
from serveoff.loadtest.probes.servers import probe_module

ROLL_AT = 0.3  # share of the run after which the rollout starts


def model_update(probed: Probed) -> ProbeResult:
    """Roll out a new version at ``ROLL_AT`` of the run (``serving/<server>/probe.py``'s ``roll_out``); which
    version answers is read after every slice."""
    settings = probed.settings
    name = probed.server.name
    result = probed.result("model_update")
    module = probe_module(name)
    if module is None:
        result.figures = {"supported": False}
        result.findings = [probed.own.no_rollout]
        return result

    roll_slice = max(1, round(ROLL_AT * settings.update_s / settings.slice_s))
    marks: dict[str, float | str] = {}
    versions: list[str] = []

    def on_slice(index: int) -> None:
        versions.append(module.serving_version(probed.own, probed.layout))
        if index + 1 == roll_slice and not marks:
            marks["start"] = time.monotonic() - t0
            marks["version"] = module.roll_out(probed.own, probed.layout)
            marks["end"] = time.monotonic() - t0

    t0 = time.monotonic()
    run = timeline(probed, closed(settings.concurrency), settings.update_s, "load", t0, on_slice)
    for sample, version in zip(run.samples, versions, strict=False):
        sample.note = f"version {version}"
    before = [s.p99_ms for s in run.samples if s.t_s <= marks.get("start", 0) and s.p99_ms is not None]
    during = [s.p99_ms for s in run.samples if s.t_s > marks.get("start", 1e9) and s.p99_ms is not None]
    result.series = run.samples
    result.figures = {
        "supported": True,
        "failed_requests": run.failed,
        "rollout_s": round(float(marks["end"]) - float(marks["start"]), 2) if "end" in marks else None,
        "p99_before_ms": max(before, default=None),
        "p99_after_start_ms": max(during, default=None),
        "versions_seen": ", ".join(dict.fromkeys(versions)),
    }
    result.findings = [module.HOW]
    return result
