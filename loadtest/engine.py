"""Locust, driven through its library API: a local runner, or a master with ``workers`` worker processes.

The controller (this process) prepares each load point on every load-generator process, spawns the
users, collects the closed measurement windows they report, and stops the users. Workers are locust's
own ``--worker`` processes, started by PID in sessions of their own and stopped by PID.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import argument_parser
from locust.env import Environment
from locust.runners import STATE_STOPPED, MasterRunner

from serveoff.errors import ServeoffError
from serveoff.loadtest import users
from serveoff.loadtest.histograms import decode, merge
from serveoff.loadtest.spec import LoadSpec
from serveoff.loadtest.stats import Window
from serveoff.serving.process import ManagedProcess, ensure_port_free, free_port_base

HOST = "127.0.0.1"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CONNECT_TIMEOUT_S = 90.0
PREPARE_TIMEOUT_S = 180.0  # an in-process baseline loads its model when prepared
SPAWN_MARGIN_S = 0.5

logging.getLogger("locust").setLevel(logging.ERROR)


def _no_command_line(ui_extra_args_dict: Any) -> Any:
    """Locust's web UI parses ``sys.argv`` as locust options; serveoff's command line is not locust's."""
    return lambda args=None: ui_extra_args_dict([] if args is None else args)


argument_parser.ui_extra_args_dict = _no_command_line(argument_parser.ui_extra_args_dict)


class LoadEngine:
    """The load generator: one locust environment that runs one load point at a time."""

    def __init__(
        self, workers: int = 0, ui_port: int | None = None, logdir: Path | None = None, ui_host: str = HOST
    ) -> None:
        self.environment = Environment(user_classes=list(users.USER_CLASSES.values()))
        self.workers: list[ManagedProcess] = []
        self.web_ui = None
        self._prepared: dict[str, Any] = {}
        self._windows: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        if ui_port is not None:
            ensure_port_free(ui_port, "locust web UI", ui_host)
        if workers:
            self._start_distributed(workers, logdir or Path.cwd())
        else:
            self.runner = self.environment.create_local_runner()
            users.install(self.environment)
        # serveoff checks the generator itself (recorder.py); locust's own warning would only add noise
        self.runner.cpu_warning_emitted = self.runner.worker_cpu_warning_emitted = True
        self.runner.register_message(users.PREPARED, self._on_prepared)
        self.runner.register_message(users.WINDOW, self._on_window)
        if ui_port is not None:
            self.web_ui = self.environment.create_web_ui(ui_host, ui_port)

    @property
    def generator_count(self) -> int:
        """How many processes generate load (each reports every window)."""
        return len(self.workers) or 1

    def _start_distributed(self, workers: int, logdir: Path) -> None:
        port = free_port_base(1)
        self.runner = self.environment.create_master_runner(HOST, port)
        argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
        argv += ["--master-host", HOST, "--master-port", str(port), "--loglevel", "WARNING"]
        for index in range(workers):
            worker = ManagedProcess(argv, logdir / f"locust-worker-{index}.log", die_with_parent=True)
            worker.start()
            self.workers.append(worker)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while self.runner.worker_count < workers:
            for worker in self.workers:
                if worker.exit_code() is not None:
                    raise ServeoffError(
                        f"locust worker exited with code {worker.exit_code()}; log {worker.log_path}:\n"
                        f"{worker.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise ServeoffError(
                    f"only {self.runner.worker_count} of {workers} locust workers connected within "
                    f"{CONNECT_TIMEOUT_S:.0f} s; see {logdir}/locust-worker-*.log"
                )
            gevent.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        """This process and every worker: the load generator's own processes."""
        return [psutil.Process()] + [p for w in self.workers for p in w.processes()]

    def _on_prepared(self, msg: Any, **_: Any) -> None:
        self._prepared.setdefault(msg.data["point"], []).append(msg.data["error"])

    def _on_window(self, msg: Any, **_: Any) -> None:
        data = msg.data
        self._windows[data["point"]][data["index"]].append(data)

    def start(self, spec: LoadSpec, warmup_s: float) -> float:
        """Prepare ``spec`` on every generator, spawn its users; returns when measurement starts.

        Locust's request event fires for every request only while its web UI is on to show it.
        """
        point = spec.id
        self._prepared.pop(point, None)
        spec = dataclasses.replace(spec, ui=self.web_ui is not None)
        self.runner.send_message(users.PREPARE, spec.to_message())
        deadline = time.monotonic() + PREPARE_TIMEOUT_S
        while len(self._prepared.get(point, [])) < self.generator_count:
            if time.monotonic() > deadline:
                raise ServeoffError(
                    f"load generators did not get ready for {point} in {PREPARE_TIMEOUT_S:.0f} s"
                )
            gevent.sleep(0.02)
        errors = [e for e in self._prepared[point] if e]
        if errors:
            raise ServeoffError(f"load generator could not prepare {point}: {errors[0]}")
        self.environment.stats.reset_all()
        measure_start = time.monotonic() + SPAWN_MARGIN_S + warmup_s
        self.runner.send_message(users.GO, {"measure_start": measure_start})
        count = spec.users
        self.runner.start(count, spawn_rate=max(count, 1) * 20, user_classes=[users.USER_CLASSES[spec.kind]])
        return measure_start

    def window(self, point: str, index: int, deadline: float) -> Window | None:
        """Window ``index`` of ``point``, merged over the generators; ``None`` if one misses ``deadline``."""
        while len(self._windows[point][index]) < self.generator_count:
            if time.monotonic() > deadline:
                return None
            gevent.sleep(0.02)
        parts = self._windows[point].pop(index)
        return Window(
            index=index,
            duration_s=parts[0]["duration_s"],
            requests=sum(p["requests"] for p in parts),
            errors=_sum_counts(p["errors"] for p in parts),
            histogram=merge(decode(p["histogram"]) for p in parts),
            generator_busy=max(p["generator_busy"] for p in parts),
            unfinished=sum(p["unfinished"] for p in parts),
            generators=len(parts),
            scheduled=sum(p["scheduled"] for p in parts),
            late_sends=sum(p["late_sends"] for p in parts),
            queued=sum(p["queued"] for p in parts),
            send_lag_max_s=max(p["send_lag_max_s"] for p in parts),
            send_lag=merge(decode(p["send_lag_histogram"]) for p in parts),
        )

    def stop_users(self) -> None:
        """Stop the point's users and wait until every generator has stopped."""
        self.runner.stop()
        deadline = time.monotonic() + 30
        while self.runner.state != STATE_STOPPED and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if isinstance(self.runner, MasterRunner):
            gevent.sleep(0.2)  # let the workers' last messages for this point drain
        self._windows.clear()

    def close(self) -> None:
        """Stop the users, the web UI and every worker process."""
        try:
            self.runner.quit()
        finally:
            if self.web_ui is not None:
                self.web_ui.stop()
            for worker in self.workers:
                worker.stop(grace=5)


def _sum_counts(dicts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total
