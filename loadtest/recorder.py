"""Per-process recording: each request's latency goes into the window of its scheduled send time.

A window closes once every request scheduled in it has been answered (or, at the latest, a drain time
after its end, counting the rest as unfinished): every scheduled request is counted once, as answered,
failed by kind, or unfinished. Closed windows are reported to the controller with their encoded latency
histogram, the send-lag histogram (open loop: how late each request with a free slot was sent after its
scheduled time), and how busy this process's event loop was (the load generator's self-checks).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Callable

import gevent
import psutil

from serveoff.loadtest.histograms import encode, new_histogram, record
from serveoff.loadtest.stats import LATE_SEND_S

TICK_S = 0.02


def event_loop_cpu_s() -> float:
    """CPU seconds of this process's main thread, where gevent's event loop and every user run."""
    me = os.getpid()
    for thread in psutil.Process(me).threads():
        if thread.id == me:
            return thread.user_time + thread.system_time
    return 0.0


class WindowRecorder:
    """Latencies, errors and event-loop load of one load point in this process, window by window."""

    def __init__(
        self,
        point: str,
        worker: str,
        measure_start: float,
        window_s: float,
        max_windows: int,
        drain_s: float,
        report: Callable[[dict], None],
        open_loop: bool = False,
    ) -> None:
        self.point = point
        self.worker = worker
        self.start = measure_start
        self.window_s = window_s
        self.max_windows = max_windows
        self.drain_s = drain_s
        self.report = report
        self.open_loop = open_loop
        self.schedules: list[Callable[[float], None]] = []  # open loop: each user's arrivals, to advance
        self.histograms = [new_histogram() for _ in range(max_windows)]
        self.send_lags = [new_histogram() for _ in range(max_windows)]  # sends with a slot free (µs)
        self.ok = [0] * max_windows
        self.errors = [Counter() for _ in range(max_windows)]
        self.pending = [0] * max_windows
        self.scheduled = [0] * max_windows
        self.late = [0] * max_windows  # sent late with a slot free: the generator itself lagged
        self.queued = [0] * max_windows  # waited for a slot: the server had not answered the earlier ones
        self.lag_max = [0.0] * max_windows
        self.closed = [False] * max_windows
        self.loop_cpu: dict[int, float] = {}  # event-loop CPU seconds at each window boundary
        self.greenlet = gevent.spawn(self._close_windows)

    def window_of(self, scheduled: float) -> int | None:
        """The window a request scheduled at ``scheduled`` counts in; ``None`` for warm-up and after."""
        index = math.floor((scheduled - self.start) / self.window_s)
        return index if 0 <= index < self.max_windows else None

    def begin(self, scheduled: float) -> int | None:
        """Note a request scheduled for ``scheduled`` (it may still wait to be sent)."""
        index = self.window_of(scheduled)
        if index is not None:
            self.pending[index] += 1
            self.scheduled[index] += 1
        return index

    def add_schedule(self, advance: Callable[[float], None]) -> None:
        """An open-loop user's schedule: ``advance(t)`` counts every arrival due by ``t``."""
        self.schedules.append(advance)

    def sent(self, index: int | None, scheduled: float, queued: bool) -> None:
        """A request ``begin`` returned ``index`` for is sent now; ``queued``: it had waited for a slot."""
        if index is None or self.closed[index]:
            return
        lag = time.monotonic() - scheduled
        if lag > self.lag_max[index]:
            self.lag_max[index] = lag
        if queued:  # its wait was the server's backlog, not the generator's lag
            self.queued[index] += 1
            return
        record(self.send_lags[index], lag)
        if lag > LATE_SEND_S:
            self.late[index] += 1

    def finish(self, index: int | None, scheduled: float, error: str | None) -> None:
        """Record the outcome of a request ``begin`` returned ``index`` for, timed from ``scheduled``."""
        if index is None or self.closed[index]:
            return
        self.pending[index] -= 1
        if error is None:
            self.ok[index] += 1
            record(self.histograms[index], time.monotonic() - scheduled)
        else:
            self.errors[index][error] += 1

    def stop(self) -> None:
        self.greenlet.kill(block=False)

    def _close_windows(self) -> None:
        for index in range(self.max_windows + 1):  # sample the event loop at every boundary
            boundary = self.start + index * self.window_s
            while time.monotonic() < boundary:
                self._close_due()
                gevent.sleep(min(TICK_S, max(0.0, boundary - time.monotonic())))
            self.loop_cpu[index] = event_loop_cpu_s()
        while not all(self.closed):
            self._close_due()
            gevent.sleep(TICK_S)

    def _close_due(self) -> None:
        now = time.monotonic()
        for index in range(self.max_windows):
            end = self.start + (index + 1) * self.window_s
            if self.closed[index] or index + 1 not in self.loop_cpu:
                continue
            for advance in self.schedules:  # a lagging generator's arrivals of this window count too
                advance(end)
            counted = bool(self.schedules) or not self.open_loop
            if (counted and self.pending[index] <= 0) or now >= end + self.drain_s:
                self._close(index)

    def _close(self, index: int) -> None:
        self.closed[index] = True
        busy = (self.loop_cpu[index + 1] - self.loop_cpu[index]) / self.window_s
        self.report(
            {
                "point": self.point,
                "worker": self.worker,
                "index": index,
                "duration_s": self.window_s,
                "scheduled": self.scheduled[index],
                "requests": self.ok[index],
                "errors": dict(self.errors[index]),
                "unfinished": self.pending[index],
                "late_sends": self.late[index],
                "queued": self.queued[index],
                "send_lag_max_s": round(self.lag_max[index], 6),
                "histogram": encode(self.histograms[index]),
                "send_lag_histogram": encode(self.send_lags[index]),
                "generator_busy": busy,
            }
        )
