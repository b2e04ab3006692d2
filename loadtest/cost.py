"""What serving costs: CPU seconds and peak resident memory of a server's own processes, via psutil."""

from __future__ import annotations

import time
from collections.abc import Callable

import gevent
import psutil

RSS_EVERY_S = 0.25


class ProcessSampler:
    """Samples the processes ``processes()`` returns: CPU seconds at window boundaries, peak RSS throughout.

    CPU time is tracked per PID, so a process that appears mid-window counts from its birth and one
    that exits keeps what it used until the last sample.
    """

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        self.processes = processes
        self.peak_rss = 0
        self._cpu: dict[int, float] = {}
        self._greenlet: gevent.Greenlet | None = None

    def cpu_seconds(self) -> float:
        """Total CPU seconds used so far by every process seen."""
        for proc in self.processes():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self._cpu[proc.pid] = times.user + times.system
        return sum(self._cpu.values())

    def rss(self) -> int:
        """Resident memory of the processes now, in bytes (shared pages count once per process)."""
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def watch_memory(self) -> None:
        """Start tracking the peak RSS in the background."""
        self.peak_rss = self.rss()

        def loop() -> None:
            while True:
                gevent.sleep(RSS_EVERY_S)
                self.peak_rss = max(self.peak_rss, self.rss())

        self._greenlet = gevent.spawn(loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)


def sleep_until(moment: float) -> None:
    """Sleep (cooperatively) until ``time.monotonic()`` reaches ``moment``."""
    delay = moment - time.monotonic()
    if delay > 0:
        gevent.sleep(delay)
