"""Process failure: the process doing inference is killed while load runs; does the server recover?"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from serveoff.loadtest.plan import closed
from serveoff.loadtest.probes.context import Probed, timeline
from serveoff.loadtest.probes.schema import ProbeResult, Sample
from serveoff.loadtest.probes.servers import probe_module

KILL_AT = 0.3  # share of the run after which the process is killed
SLOWED = 3.0  # a slice this much slower than before the kill is still disrupted


def victim(probed: Probed) -> psutil.Process | None:
    """The process doing inference: one whose command line has the server's ``inference_mark``
    (TorchServe's Python worker) and, where the probe module names them, that serves the version answering
    now (not a worker the rollout left behind); else the server's own root process."""
    module = probe_module(probed.server.name)
    serving = getattr(module, "serving_pids", None)
    wanted = set(serving(probed.own, probed.layout)) if serving is not None else None
    mark = probed.own.inference_mark
    for proc in probed.server.processes():
        try:
            marked = mark is None or any(mark in part for part in proc.cmdline())
            if marked and (not wanted or inner_pid(proc) in wanted):
                return proc
        except psutil.Error:
            continue
    return None


def inner_pid(proc: psutil.Process) -> int:
    """``proc``'s PID as its own PID namespace numbers it, the one a server in a container reports."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return proc.pid
    spaces = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    return int(spaces[-1]) if spaces else proc.pid


def process_failure(probed: Probed) -> ProbeResult:
    """Kill the inference process (SIGKILL) after ``KILL_AT`` of the run and watch the rest of it."""
    settings = probed.settings
    result = probed.result("process_failure")
    target = victim(probed)
    if target is None:
        result.error = "no process doing inference was found"
        return result
    command = _command(target)
    kill_slice = max(1, round(KILL_AT * settings.failure_s / settings.slice_s))
    killed: dict[str, float] = {}

    def kill(index: int) -> None:
        if index + 1 == kill_slice and not killed:
            killed["t"] = time.monotonic() - t0
            target.kill()

    t0 = time.monotonic()
    run = timeline(probed, closed(settings.concurrency), settings.failure_s, "load", t0, kill)
    kill_t = killed.get("t")
    after = [s for s in run.samples if kill_t is not None and s.t_s > kill_t]
    for sample in after:
        sample.phase = "after kill"
    before = [s.p50_ms for s in run.samples if s not in after and s.p50_ms is not None]
    normal = sorted(before)[len(before) // 2] if before else None
    disrupted = [s for s in after if _disrupted(s, normal)]
    answering = bool(after) and not _disrupted(after[-1], normal)
    result.series = run.samples
    result.figures = {
        "killed_pid": target.pid,
        "killed_command": command,
        "failed_requests": sum(s.failed for s in after),
        "recovered": answering,
        "recovery_s": (round(disrupted[-1].t_s - kill_t, 2) if disrupted else 0.0) if answering else None,
        "inference_pids_after": ", ".join(str(p.pid) for p in [victim(probed)] if p is not None) or "none",
        "errors": ", ".join(f"{k} x{n}" for k, n in sorted(run.errors.items())) or "none",
    }
    result.findings = [f"{probed.server.name} " + (f"recovered by itself in {result.figures['recovery_s']} s"
                       if answering else "did not recover by itself within the run")]  # fmt: skip
    return result


def _command(proc: psutil.Process) -> str:
    """The start of ``proc``'s command line (its program and first argument)."""
    try:
        return " ".join(proc.cmdline()[:2])[:120]
    except psutil.Error:
        return "unknown"


def _disrupted(sample: Sample, normal_p50: float | None) -> bool:
    """A slice with failures, no answer, or a median latency over ``SLOWED`` times the one before the kill."""
    if sample.failed or not sample.ok:
        return True
    return normal_p50 is not None and sample.p50_ms is not None and sample.p50_ms > SLOWED * normal_p50
