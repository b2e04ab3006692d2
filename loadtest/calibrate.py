"""The harness's own floor, measured at the start of every run: how much of a figure is the load generator.

A trivial HTTP responder (``responder.py``: a fixed reply to every request, parsed with httptools) runs
as a process of its own on the servers' CPUs, bound to 127.0.0.1, and is stopped by PID.
The load generator measures it through the same ``LoadEngine`` and ``measure`` the servers get, with the
servers' REST payload: its latency at concurrency 1 (the floor under every c=1 figure) and its capacity
(the most it sent: in a closed loop of many users, or of one where many sent less, as when the one
responder process is the limit). Both are short: a few seconds in all.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from serveoff.errors import ServeoffError
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.measure import PointAborted, Subject, measure
from serveoff.loadtest.plan import LoadPoint, WindowPolicy, closed
from serveoff.serving.process import ManagedProcess, free_port_base
from serveoff.serving.targets import Target

POLICY = WindowPolicy(warmup_s=0.5, window_s=0.4, min_windows=3, max_windows=3)
CAPACITY_USERS = 32
READY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Harness:
    """The generator's floor, as the manifest keeps it (``manifest.harness``)."""

    c1_p50_us: float | None
    c1_p99_us: float | None
    c1_throughput_rps: float | None
    capacity_rps: float | None  # the higher closed-loop throughput: CAPACITY_USERS users, or one
    capacity_concurrency: int  # the users that sent it
    capacity_generator_busy: float | None  # the busiest generator event loop at capacity, 0..1
    generator_cpus: list[int]
    responder_cpus: list[int] | None  # read back from the kernel
    endpoint: str
    payload_bytes: int
    seconds: float
    error: str | None = None

    def to_json(self) -> dict:
        """Plain data for the manifest."""
        return asdict(self)


class Responder:
    """The trivial endpoint as a process of its own, pinned to ``cpus``."""

    def __init__(self, logdir: Path, cpus: tuple[int, ...] | None) -> None:
        self.port = free_port_base(1)
        argv = [sys.executable, "-m", "serveoff.loadtest.responder", str(self.port)]
        self.process = ManagedProcess(argv, logdir / "harness-responder.log", cpus=cpus, die_with_parent=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> list[int]:
        """Start it and wait until it accepts connections; returns its CPUs, read back from the kernel."""
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.exit_code() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return sorted(psutil.Process(self.process.pid).cpu_affinity())
            except OSError:
                time.sleep(0.05)
        raise ServeoffError(f"the harness responder did not start; see {self.process.log_path}")

    def stop(self) -> None:
        self.process.stop(grace=2)


def calibrate(
    engine: LoadEngine, rest: dict, logdir: Path, server_cpus: tuple[int, ...] | None,
    generator_cpus: tuple[int, ...], timeout_s: float,
) -> Harness:  # fmt: skip
    """Measure the generator's floor against a responder on ``server_cpus`` with ``rest``'s body and
    headers; a measurement that fails is recorded with its error, never raised."""
    started = time.monotonic()
    responder = Responder(logdir, server_cpus)
    subject = Subject(Target("harness", "rest"), "harness",
                      {"kind": "rest", "address": responder.address, "path": "/",
                       "body": rest.get("body", b"{}"), "headers": rest.get("headers", {})},
                      1, "serveoff's trivial responder")  # fmt: skip
    c1: dict = {}
    cap: dict = {}
    error, responder_cpus = None, None
    try:
        responder_cpus = responder.start()
        c1 = _point(engine, subject, closed(1), timeout_s)
        cap = _point(engine, subject, closed(CAPACITY_USERS), timeout_s)
    except ServeoffError as err:
        error = str(err)
    finally:
        responder.stop()
    c1_rps, cap_rps = _figure(c1, "throughput_rps"), _figure(cap, "throughput_rps")
    if c1_rps is not None and (cap_rps is None or c1_rps > cap_rps):
        cap, cap_rps, concurrency = c1, c1_rps, 1  # many users can send less than one (the responder)
    else:
        concurrency = CAPACITY_USERS
    return Harness(
        _figure(c1, "latency_us", "p50"), _figure(c1, "latency_us", "p99"), c1_rps,
        cap_rps, concurrency, cap.get("generator_busy_max"), list(generator_cpus),
        responder_cpus, responder.address, subject.payload_bytes,
        round(time.monotonic() - started, 2), error,
    )  # fmt: skip


def _point(engine: LoadEngine, subject: Subject, point: LoadPoint, timeout_s: float) -> dict:
    try:
        return measure(engine, subject, point, POLICY, timeout_s=timeout_s, seed=0, phase="calibration")
    except PointAborted as err:
        raise ServeoffError(f"harness calibration at {point.label}: {err.message}") from None


def _figure(result: dict, *path: str) -> float | None:
    value = result.get("summary") or {}
    for key in path:
        value = value.get(key) or {}
    found = value.get("value") if isinstance(value, dict) else None
    return round(found, 2) if isinstance(found, float | int) else None


def calibration_line(harness: Harness) -> str:
    """One log line: the harness's floor, or why it could not be measured."""
    if harness.error:
        return f"serveoff: warning: the harness calibration failed ({harness.error}); the run goes on"

    def us(value: float | None) -> str:
        return f"{value:.0f} µs" if value is not None else "-"

    capacity = f"{harness.capacity_rps:,.0f} req/s" if harness.capacity_rps is not None else "-"
    return (f"harness on CPUs {harness.generator_cpus}: c=1 p50 {us(harness.c1_p50_us)}, p99 "
            f"{us(harness.c1_p99_us)} against a trivial endpoint; capacity {capacity} at "
            f"c={harness.capacity_concurrency} ({harness.seconds:.1f} s)")  # fmt: skip
