"""What serving costs: CPU seconds and peak memory of a server, sampled over each load point."""

from __future__ import annotations

import time

import gevent

from serveoff.serving.usage import Usage

MEMORY_EVERY_S = 0.25


class CostSampler:
    """Samples a ``Usage``: CPU seconds at window boundaries, peak memory throughout (in the background)."""

    def __init__(self, usage: Usage) -> None:
        self.usage = usage
        self.peak_memory = 0
        self._greenlet: gevent.Greenlet | None = None

    def cpu_seconds(self) -> float:
        return self.usage.cpu_seconds()

    def watch_memory(self) -> None:
        """Start tracking the peak memory in the background."""
        self.peak_memory = self.usage.memory_bytes()

        def loop() -> None:
            while True:
                gevent.sleep(MEMORY_EVERY_S)
                self.peak_memory = max(self.peak_memory, self.usage.memory_bytes())

        self._greenlet = gevent.spawn(loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)


def sleep_until(moment: float) -> None:
    """Sleep (cooperatively) until ``time.monotonic()`` reaches ``moment``."""
    delay = moment - time.monotonic()
    if delay > 0:
        gevent.sleep(delay)
