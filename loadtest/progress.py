"""The live progress display of a benchmark: current target and load point, windows, time left."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class BenchProgress:
    """A progress bar counted in measurement windows (an upper bound: stable points end early)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("windows, time left"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("starting", total=None)
        self.per_point = 1
        self.point_done = 0

    def start(self, measurements: int, windows_each: int) -> None:
        self.per_point = windows_each
        self.bar.update(self.task, total=measurements * windows_each, completed=0)
        self.bar.start()

    def more(self, measurements: int) -> None:
        """Add measurements that were not planned at the start (search probes)."""
        total = self.bar.tasks[0].total or 0
        self.bar.update(self.task, total=total + measurements * self.per_point)

    def point(self, description: str) -> None:
        self.point_done = 0
        self.bar.update(self.task, description=description)

    def window(self, index: int) -> None:
        self.point_done += 1
        self.bar.advance(self.task)

    def finished(self, line: str) -> None:
        """A point ended (maybe early, when stable): skip its unused windows and log one line."""
        self.bar.advance(self.task, self.per_point - self.point_done)
        self.bar.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        self.bar.stop()
