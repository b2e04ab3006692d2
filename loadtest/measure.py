"""Measure one load point on one target: warm-up, windows until stable, cost and server metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from serveoff.errors import ServeoffError
from serveoff.loadtest.cost import CostSampler, sleep_until
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.histograms import encode, merge
from serveoff.loadtest.plan import CLOSED, LoadPoint, WindowPolicy
from serveoff.loadtest.spec import LoadSpec
from serveoff.loadtest.stats import Window, estimate, load_flags, send_lag, stable
from serveoff.serving.process import ServerError
from serveoff.serving.targets import Target
from serveoff.serving.usage import Usage
from serveoff.signals import raise_if_stopped

CLIENT_BOUND_BUSY = 0.9  # a generator event loop this busy may have delayed sends: its numbers are suspect
REPORT_GRACE_S = 15.0


@dataclass
class Subject:
    """One target serving one model, with the wire request every load point sends."""

    target: Target
    model: str
    request: dict  # kind, address, path, body, headers and, for baselines, how to load the model
    batch_size: int
    source: str  # what produced the numbers: the server and its own version, or the in-process framework
    usage: Usage | None = None  # the server's CPU and memory counters (none for baselines)
    metrics: Callable[[], dict[str, float]] | None = None  # its Prometheus metrics
    log_tail: Callable[[], str] | None = None  # the server's last lines of output, for a server that died

    @property
    def payload_bytes(self) -> int:
        return len(self.request["body"])


@dataclass
class PointAborted(ServeoffError):
    """A load point that could not finish; ``result`` holds what it measured before the failure."""

    message: str
    result: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def measure(
    engine: LoadEngine,
    subject: Subject,
    point: LoadPoint,
    policy: WindowPolicy,
    *,
    timeout_s: float,
    seed: int,
    phase: str = "sweep",
    on_window: Callable[[int], None] = lambda _: None,
) -> dict:
    """Run ``point`` against ``subject`` and return its results entry."""
    spec = _load_spec(engine, subject, point, policy, timeout_s, seed, phase)
    name = spec.name
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    sampler = CostSampler(subject.usage) if subject.usage else None
    before = _scrape(subject)
    windows: list[Window] = []
    error: str | None = None
    measure_start = engine.start(spec, policy.warmup_s)
    try:
        sleep_until(measure_start)
        cpu = sampler.cpu_seconds() if sampler else 0.0
        if sampler:
            sampler.watch_memory()
        for index in range(policy.max_windows):
            end = measure_start + (index + 1) * policy.window_s
            sleep_until(end)
            raise_if_stopped()  # a stop signal whose exception was swallowed (see signals.py)
            cpu_now = sampler.cpu_seconds() if sampler else 0.0
            window = engine.window(spec.id, index, end + timeout_s + REPORT_GRACE_S)
            if window is None:
                raise ServeoffError(f"{name}: a load generator did not report window {index + 1}")
            window.server_cpu_s = cpu_now - cpu if sampler else None
            cpu = cpu_now
            windows.append(window)
            on_window(index)
            _check_answered(subject, window, name)
            if index + 1 >= policy.min_windows and stable(windows, policy, point.loop != CLOSED):
                break
    except ServeoffError as err:
        error = str(err)
    finally:
        engine.stop_users()
        if sampler:
            sampler.stop()
    result = point_result(subject, point, windows, phase, started_at, policy, seed)
    result["peak_rss_mib"] = round(sampler.peak_memory / 2**20, 1) if sampler and windows else None
    result["server_metrics"] = _delta(before, _scrape(subject)) if subject.metrics else None
    if error is not None:
        result["error"] = error
        raise PointAborted(error, result)
    return result


def _load_spec(
    engine: LoadEngine, subject: Subject, point: LoadPoint, policy: WindowPolicy, timeout_s: float, seed: int,
    phase: str,
) -> LoadSpec:  # fmt: skip
    """What every load generator is told to run for ``point``."""
    return LoadSpec.from_request(
        subject.request,
        id=f"{subject.model}/{subject.target.name}/{point.label}/{phase}/{time.monotonic_ns()}",
        name=f"{subject.model} {subject.target.name} {point.label}",
        load=point,
        users=point.concurrency if point.loop == CLOSED else engine.generator_count,
        window_s=policy.window_s,
        max_windows=policy.max_windows,
        timeout_s=timeout_s,
        seed=seed,
    )


def point_result(
    subject: Subject,
    point: LoadPoint,
    windows: list[Window],
    phase: str,
    started_at: str,
    policy: WindowPolicy,
    seed: int,
) -> dict:
    """The results entry of a measured point: its statistics and its raw windows."""
    busy = max((w.generator_busy for w in windows), default=0.0)
    return {
        "model": subject.model,
        "target": subject.target.name,
        "system": subject.target.system,
        "protocol": subject.target.protocol,
        "baseline": subject.target.is_baseline,
        "source": subject.source,
        "phase": phase,
        "load": point.to_json(),
        "label": point.label,
        "offered": point.offered,
        "batch_size": subject.batch_size,
        "payload_bytes": subject.payload_bytes,
        "started_at": started_at,
        "stable": stable(windows, policy, point.loop != CLOSED),
        "generator_busy_max": round(busy, 3),
        "client_bound": busy >= CLIENT_BOUND_BUSY,
        **load_flags(windows),
        "summary": estimate(windows, subject.batch_size, seed) if windows else None,
        "histogram": encode(merge(w.histogram for w in windows)),
        "send_lag_histogram": encode(send_lag(windows)),
        "windows": [w.to_json() for w in windows],
        "error": None,
    }


def _check_answered(subject: Subject, window: Window, name: str) -> None:
    """A window in which nothing was answered ends the run: the server failed or is gone."""
    if window.requests or not window.failed:
        return
    gone = subject.usage is not None and not subject.usage.running()
    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(window.errors.items())) or "no answer"
    state = f"{subject.target.system} is no longer running" if gone else "none was answered"
    tail = subject.log_tail() if gone and subject.log_tail is not None else ""
    output = f"\n{subject.target.system}'s last output:\n{tail}" if tail else ""
    raise ServerError(f"{name}: {state} ({kinds} in window {window.index + 1}){output}")


def _scrape(subject: Subject) -> dict[str, float] | str:
    if subject.metrics is None:
        return {}
    try:
        return subject.metrics()
    except ServeoffError as err:
        return str(err)


def _delta(before: dict[str, float] | str, after: dict[str, float] | str) -> dict:
    """How each server metric changed over the point (counters: the work done during it)."""
    if isinstance(before, str) or isinstance(after, str):
        return {"error": before if isinstance(before, str) else after}
    changed = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}
    return {"delta": changed}
