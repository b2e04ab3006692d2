"""The error types the CLI turns into a single clear line and a non-zero exit."""

from __future__ import annotations

import signal
from pathlib import Path


class ServeoffError(Exception):
    """A user-facing failure: its message says what is wrong and what to do."""

    exit_code = 2


class ParityError(ServeoffError):
    """The TorchScript and SavedModel artifacts do not compute the same function."""

    exit_code = 1


class Stopped(BaseException):
    """The command was told to stop (SIGINT, SIGTERM or SIGHUP): it cleans up like an interrupt.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception`` swallows it; the exit
    code is the shell's for a death by that signal (128 + its number).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        self.saved: Path | None = None  # where the partial results were saved, once they were

    @property
    def reason(self) -> str:
        """What the results record as the reason the run stopped."""
        return f"stopped by {signal.Signals(self.signum).name}"

    def __str__(self) -> str:
        return self.reason + (f"; partial results saved in {self.saved}" if self.saved else "")
