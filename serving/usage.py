"""A server's resource counters: where the cost figures of a load point come from.

Native servers are measured through their own processes (psutil); servers in containers through their
container's cgroup (Docker's stats API, ``serving/container.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import psutil


class Usage(Protocol):
    """A server's resource counters, read on demand."""

    source: str  # how the figures are taken, for manifests and reports

    def cpu_seconds(self) -> float:
        """Total CPU seconds the server has used so far."""

    def memory_bytes(self) -> int:
        """The server's resident memory now."""

    def running(self) -> bool:
        """Whether the server still runs."""


class ProcessUsage:
    """The processes ``processes()`` returns, via psutil.

    CPU time is tracked per PID, so a process that appears mid-window counts from its birth and one
    that exits keeps what it used until the last sample. Memory is the RSS summed over processes
    (shared pages count once per process).
    """

    source = "psutil: CPU time and RSS of the server's processes"

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        self.processes = processes
        self._cpu: dict[int, float] = {}

    def cpu_seconds(self) -> float:
        for proc in self.processes():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self._cpu[proc.pid] = times.user + times.system
        return sum(self._cpu.values())

    def memory_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def running(self) -> bool:
        return bool(self.processes())
