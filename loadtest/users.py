"""Locust users that send one prepared wire request in a closed or an open loop, and their process state.

Each load-generator process (the local runner, or each locust worker) holds one ``LoadState``: the
load point it was told to run and its ``WindowRecorder``. The controller configures it through locust's
custom messages, so the same code runs in one process or across ``--workers`` processes:

- ``serveoff_prepare`` (controller -> generators): the point's spec; the answer is ``serveoff_prepared``.
- ``serveoff_go`` (controller -> generators): when measurement starts; users are spawned after it.
- ``serveoff_window`` (generators -> controller): one closed measurement window.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.pool
import gevent.queue
import grpc
import numpy as np
from gevent.threadpool import ThreadPool
from grpc.experimental import gevent as grpc_gevent
from locust import User
from locust.env import Environment

from serveoff.loadtest.failures import grpc_error
from serveoff.loadtest.http import HttpConnection, PreparedRequest
from serveoff.loadtest.http import prepare as prepare_http
from serveoff.loadtest.recorder import WindowRecorder
from serveoff.loadtest.send import GRPC_OPTIONS
from serveoff.loadtest.spec import InProcess, LoadSpec

grpc_gevent.init_gevent()  # gRPC calls must yield to gevent like every other request

PREPARE, PREPARED, GO, WINDOW = "serveoff_prepare", "serveoff_prepared", "serveoff_go", "serveoff_window"
MAX_OUTSTANDING = 512  # open loop: requests in flight per process before arrivals queue in the generator
MAX_WAITING = 100_000  # open loop: arrivals that may wait for a slot; past it the oldest is not sent at all
NOT_SENT = "timeout before send (generator queue)"  # waited --timeout for one of the MAX_OUTSTANDING slots
QUEUE_FULL = "not sent (generator queue full)"  # MAX_WAITING arrivals were waiting already
# Open loop: a timer wakes up late by the machine's wake-up latency (60-250 us measured here, on top of
# libev's own rounding of every wait up to whole milliseconds, which the timerfd avoids), so the last
# SPIN_S before an arrival are spent yielding to the event loop (I/O is still served) and watching the
# clock. At most SPIN_SHARE of the mean gap between arrivals is spun, so spinning never takes more than
# that share of the generator's CPU.
SPIN_S = 300e-6
SPIN_SHARE = 0.1


@dataclass
class LoadState:
    """The load point this process runs now."""

    spec: LoadSpec | None = None
    recorder: WindowRecorder | None = None
    request: PreparedRequest | None = None  # REST: the request as it goes on the wire
    pool: ThreadPool | None = None  # in-process baselines: runs the model off the event loop
    runner: Any = None  # in-process baselines: the loaded model
    generator: int = 0  # this process's index among the load generators (seeds its arrival times)


STATE = LoadState()
_seeds = itertools.count()
_runners: dict[tuple[str, str], Any] = {}


def prepare(spec: LoadSpec) -> None:
    """Get ready to run ``spec``: prepare its wire request, load an in-process model."""
    if STATE.recorder is not None:
        STATE.recorder.stop()
    STATE.spec, STATE.recorder, STATE.request = spec, None, None
    if spec.kind == "rest":
        STATE.request = prepare_http(spec.address, spec.path, spec.headers, spec.body)
    if spec.inprocess is not None:
        STATE.runner = load_runner(spec.inprocess)
        STATE.pool = ThreadPool(spec.inprocess.instances)
    # A full collection walks every object (tens of ms here, a stall every arrival then waits for); the
    # earlier points' garbage is collected now, and what lives is kept out of the collector's way.
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def load_runner(how: InProcess) -> Any:
    """The in-process model (loaded once per process), with the config's thread counts."""
    key = (how.framework, how.artifact)
    if key not in _runners:
        from pathlib import Path

        from serveoff.models.artifacts import ArtifactLayout
        from serveoff.serving.inprocess import inprocess_client
        from serveoff.serving.resources import ServerConfig

        layout = ArtifactLayout(Path(how.artifact), how.model)
        _runners[key] = inprocess_client(how.framework, layout, ServerConfig.from_json(how.config))
    return _runners[key]


def go(environment: Environment, measure_start: float) -> None:
    """Start recording the prepared point; windows are reported through ``environment.runner``."""
    spec = STATE.spec
    assert spec is not None, "serveoff_go before serveoff_prepare"
    worker = getattr(environment.runner, "client_id", None) or f"local-{os.getpid()}"
    STATE.generator = getattr(environment.runner, "worker_index", 0)
    STATE.recorder = WindowRecorder(
        spec.id,
        worker,
        measure_start,
        spec.window_s,
        spec.max_windows,
        spec.timeout_s + 1.0,
        lambda window: environment.runner.send_message(WINDOW, window),
        open_loop=spec.open_loop,
    )


def install(environment: Environment) -> None:
    """Register the generator side of serveoff's messages on ``environment.runner``."""
    runner = environment.runner

    def on_prepare(msg: Any, **_: Any) -> None:
        error = None
        try:
            prepare(LoadSpec.from_message(msg.data))
        except Exception as err:  # reported to the controller, which stops the run with it
            error = f"{type(err).__name__}: {err}"
        runner.send_message(PREPARED, {"point": msg.data["id"], "error": error})

    def on_go(msg: Any, **_: Any) -> None:
        go(environment, msg.data["measure_start"])

    runner.register_message(PREPARE, on_prepare)
    runner.register_message(GO, on_go)


class LoadLoop:
    """The loop every target user runs: closed (send, wait for the answer, repeat) or open (scheduled)."""

    environment: Environment

    def wait_time(self) -> float:
        return 0.0

    def drive(self) -> None:
        spec, recorder = STATE.spec, STATE.recorder
        if spec is None or recorder is None:
            gevent.sleep(0.05)
            return
        if spec.open_loop:
            self._open_loop(spec, recorder)
            return
        send = self.connect()
        while True:
            scheduled = time.monotonic()
            index = recorder.begin(scheduled)
            recorder.finish(index, scheduled, send())

    def _open_loop(self, spec: LoadSpec, recorder: WindowRecorder) -> None:
        """Arrivals at scheduled times whatever the answers; latency counts from the scheduled time."""
        load = spec.load
        rng = random.Random(f"{spec.seed}/{STATE.generator}/{next(_seeds)}")  # distinct per process
        rate, poisson = load.rate / spec.users, load.arrival == "poisson"
        self._schedule = OpenSchedule(recorder, rate, poisson, rng, self.connect, spec.timeout_s)
        self._schedule.run()

    def on_stop(self) -> None:
        schedule = getattr(self, "_schedule", None)
        if schedule is not None:
            schedule.stop()

    def connect(self) -> Callable[[], str | None]:
        """A way to send the prepared request once (its own connection where the kind needs one): it
        returns the kind of error, or ``None`` when answered successfully."""
        raise NotImplementedError

    def shown(self, send: Callable[[], str | None], size: Callable[[], int]) -> Callable[[], str | None]:
        """``send``, also telling locust's own statistics (its web UI) about each request when it is on."""
        spec = STATE.spec
        if not spec.ui:
            return send
        events = self.environment.events.request

        def send_and_show() -> str | None:
            started = time.monotonic()
            error = send()
            events.fire(
                request_type=spec.kind,
                name=spec.name,
                response_time=(time.monotonic() - started) * 1000,
                response_length=size(),
                exception=RuntimeError(error) if error else None,
                context={},
            )
            return error

        return send_and_show


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_LIBC = ctypes.CDLL(None, use_errno=True)
_TIMERFD = hasattr(_LIBC, "timerfd_create")
CLOCK_MONOTONIC, TFD_TIMER_ABSTIME = 1, 1  # time.monotonic() reads CLOCK_MONOTONIC


class Alarm:
    """Wakes the calling greenlet at a ``time.monotonic()`` time, through a Linux timerfd in gevent's loop.

    libev rounds every wait up to whole milliseconds (epoll's resolution); a timerfd fires to the
    microsecond. Where there is no timerfd, it falls back to ``gevent.sleep``.
    """

    def __init__(self) -> None:
        self.fd = _LIBC.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC) if _TIMERFD else -1
        self.watcher = gevent.get_hub().loop.io(self.fd, 1) if self.fd >= 0 else None

    def wait_until(self, at: float) -> None:
        if self.watcher is None:
            gevent.sleep(max(0.0, at - time.monotonic()))
            return
        value = _Itimerspec(_Timespec(0, 0), _Timespec(int(at), int(at % 1 * 1e9)))
        _LIBC.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(value), None)
        gevent.get_hub().wait(self.watcher)
        os.read(self.fd, 8)

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
            os.close(self.fd)
            self.watcher = None


class OpenSchedule:
    """One open-loop user's arrivals: each is counted in its window when due, whatever the sending does.

    Arrivals go to idle sender greenlets, each with its own connection; while fewer than
    ``MAX_OUTSTANDING`` senders exist a busy pool grows by one. Past that, arrivals wait in a queue,
    oldest first, and one that waited ``timeout_s`` counts as ``NOT_SENT`` (past ``MAX_WAITING``
    waiting, the oldest as ``QUEUE_FULL``). The recorder also advances the schedule before it closes a
    window, so a generator that fell behind (a saturated event loop) still counts every arrival of that
    window: answered, failed by kind, or unfinished.
    """

    def __init__(
        self,
        recorder: WindowRecorder,
        rate: float,
        poisson: bool,
        rng: random.Random,
        connect: Callable[[], Callable[[], str | None]],
        timeout_s: float,
    ) -> None:
        self.recorder, self.rate, self.poisson, self.rng = recorder, rate, poisson, rng
        self.connect, self.timeout_s = connect, timeout_s
        self.spin_s = min(SPIN_S, SPIN_SHARE / rate)
        # a user spawned after measurement began still owes every arrival since then
        self.next_at = min(time.monotonic(), recorder.start) + self._gap()
        self.waiting: deque[tuple[int | None, float]] = deque()
        self.idle = 0  # senders waiting for an arrival
        self.handoff: gevent.queue.Queue = gevent.queue.Queue()  # arrivals for the idle senders
        self.senders = gevent.pool.Group()
        recorder.add_schedule(self.advance_to)

    def _gap(self) -> float:
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def run(self) -> None:
        """Release arrivals as they fall due, forever (the user's greenlet is killed to stop it)."""
        alarm = Alarm()
        try:
            while True:
                self.advance_to(time.monotonic())
                at = self.next_at
                if at - time.monotonic() > self.spin_s:
                    alarm.wait_until(at - self.spin_s)
                while time.monotonic() < at:  # the last microseconds: the event loop keeps running
                    gevent.idle()
        finally:
            alarm.close()

    def advance_to(self, now: float) -> None:
        """Count every arrival due by ``now`` in its window and send or queue it."""
        while self.next_at <= now:
            scheduled = self.next_at
            self.next_at += self._gap()
            index = self.recorder.begin(scheduled)
            if self.idle:
                self.idle -= 1
                self.handoff.put_nowait((index, scheduled))
            elif len(self.senders) < MAX_OUTSTANDING:
                self.senders.spawn(self._sender, index, scheduled)
            else:
                self.waiting.append((index, scheduled))
        self._expire(now)
        while len(self.waiting) > MAX_WAITING:  # memory stays bounded however far the server is behind
            self.recorder.finish(*self.waiting.popleft(), QUEUE_FULL)

    def _expire(self, now: float) -> None:
        while self.waiting and self.waiting[0][1] < now - self.timeout_s:
            index, scheduled = self.waiting.popleft()
            self.recorder.finish(index, scheduled, NOT_SENT)

    def _sender(self, index: int | None, scheduled: float) -> None:
        """Send arrivals on one connection: the queued ones first, else the next one handed over."""
        send, queued = self.connect(), False
        while True:
            self.recorder.sent(index, scheduled, queued)
            self.recorder.finish(index, scheduled, send())
            self._expire(time.monotonic())
            if self.waiting:
                (index, scheduled), queued = self.waiting.popleft(), True
            else:
                self.idle += 1
                (index, scheduled), queued = self.handoff.get(), False

    def stop(self) -> None:
        self.senders.kill(block=False)


class HttpTarget(LoadLoop, User):
    """REST targets: the prepared request bytes on keep-alive connections (one per user or sender)."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    def on_start(self) -> None:
        self.connections: list[HttpConnection] = []

    def connect(self) -> Callable[[], str | None]:
        connection = HttpConnection(STATE.request, STATE.spec.timeout_s)
        self.connections.append(connection)
        return self.shown(connection.exchange, lambda: connection.received)

    def on_stop(self) -> None:
        super().on_stop()
        for connection in self.connections:
            connection.close()


class GrpcTarget(LoadLoop, User):
    """gRPC targets: the prepared request bytes sent over one channel per user."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    def on_start(self) -> None:
        spec = STATE.spec
        self.channel = grpc.insecure_channel(spec.address, options=GRPC_OPTIONS)
        self.call = self.channel.unary_unary(spec.path)  # bytes in, bytes out: no re-serializing
        self.size = 0

    def on_stop(self) -> None:
        super().on_stop()
        self.channel.close()

    def connect(self) -> Callable[[], str | None]:
        return self.shown(self.send, lambda: self.size)  # the channel multiplexes every sender

    def send(self) -> str | None:
        spec = STATE.spec
        try:
            self.size = len(self.call(spec.body, timeout=spec.timeout_s))
        except grpc.RpcError as err:
            return grpc_error(err.code(), err.details() or "")
        return None


class InProcessTarget(LoadLoop, User):
    """In-process baselines: the model runs in this process, on a pool of ``instances`` threads."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    def connect(self) -> Callable[[], str | None]:
        return self.shown(self.send, lambda: 0)

    def send(self) -> str | None:
        try:
            STATE.pool.spawn(STATE.runner.predict, batch_of(STATE.spec)).get()
        except Exception as err:  # a failing model is an error to count, like a server's HTTP 500
            return f"error {type(err).__name__}"
        return None


_batches: dict[str, np.ndarray] = {}


def batch_of(spec: LoadSpec) -> np.ndarray:
    """The point's input batch, decoded once."""
    if spec.id not in _batches:
        _batches.clear()
        how = spec.inprocess
        _batches[spec.id] = np.frombuffer(spec.body, dtype=how.dtype).reshape(how.shape).copy()
    return _batches[spec.id]


USER_CLASSES: dict[str, type[User]] = {"rest": HttpTarget, "grpc": GrpcTarget, "inprocess": InProcessTarget}
