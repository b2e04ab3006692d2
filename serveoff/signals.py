"""SIGINT, SIGTERM and SIGHUP stop a command the way an interrupt does: cleanly, with one line.

The handler raises ``Stopped`` in the main greenlet, where the command's cleanups (servers stopped,
results marked partial, the report written) wait for it: directly when the signal lands there; under
gevent, when the event loop or one of locust's greenlets runs, by throwing it into the main greenlet from
the loop, so no greenlet of locust's dies of it and gevent prints nothing. Only the first signal stops the
command; later ones are ignored while it cleans up (CI systems send SIGINT, then SIGTERM, then SIGKILL),
and ``deferred`` holds a signal back until a cleanup has run to its end.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from greenlet import getcurrent

from serveoff.errors import Stopped

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopper:
    """The signal handler's state: the greenlet to stop, and the signal that came, if one did."""

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, main: Any) -> None:
        self.main = main
        self.received: int | None = None  # the first stop signal
        self.pending: int | None = None  # that signal, when it came during a cleanup and waits to be raised
        self.deferring = 0

    def handle(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            return  # already stopping: let the cleanups finish
        self.received = signum
        if self.deferring:
            self.pending = signum
            return
        stop = Stopped(signum)
        if getcurrent() is self.main:
            raise stop
        from gevent import get_hub  # not the main greenlet: gevent runs, and its loop can switch to it

        get_hub().loop.run_callback(self.main.throw, stop)


_stopper = _Stopper()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the body runs, SIGINT, SIGTERM and SIGHUP raise ``Stopped`` in this (the main) greenlet."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals
        return
    _stopper.reset(getcurrent())
    previous = {signum: signal.signal(signum, _stopper.handle) for signum in STOP_SIGNALS}
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_when_stopped(unraisable)
    try:
        yield
    finally:
        sys.unraisablehook = unraisable
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _quiet_when_stopped(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``hook``, except for a ``Stopped`` Python had to drop (raised in a weakref callback or ``__del__``):
    that one is not printed, and ``raise_if_stopped`` raises it again where it can propagate."""

    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Stopped):
            hook(unraisable)

    return quiet


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal back while the body (a cleanup) runs, and raise it when the body is done."""
    _stopper.deferring += 1
    try:
        yield
    finally:
        _stopper.deferring -= 1
    signum = _stopper.pending
    if not _stopper.deferring and signum is not None:
        _stopper.pending = None
        raise Stopped(signum)


def raise_if_stopped() -> None:
    """Raise ``Stopped`` again if a stop signal came and its exception was swallowed on the way.

    A signal can land while Python runs a weakref callback or ``__del__`` (during garbage collection),
    where an exception is printed as "ignored" and dropped; long loops call this so the command stops
    anyway. It does nothing while a cleanup defers the signal, or when none came.
    """
    if _stopper.received is not None and not _stopper.deferring:
        raise Stopped(_stopper.received)


def stop_reason(err: BaseException) -> str:
    """Why a run ended early, for its results: the signal, or the unexpected error."""
    if isinstance(err, Stopped):
        return err.reason
    if isinstance(err, KeyboardInterrupt):
        return "stopped by SIGINT"
    return f"stopped by an unexpected error: {type(err).__name__}: {err}"
