"""Locust users that send one prepared wire request in a closed or an open loop, and their process state.

Each load-generator process (the local runner, or each locust worker) holds one ``LoadState``: the
load point it was told to run and its ``WindowRecorder``. The controller configures it through locust's
custom messages, so the same code runs in one process or across ``--workers`` processes:

- ``serveoff_prepare`` (controller -> generators): the point's spec; the answer is ``serveoff_prepared``.
- ``serveoff_go`` (controller -> generators): when measurement starts; users are spawned after it.
- ``serveoff_window`` (generators -> controller): one closed measurement window.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.pool
import grpc
import numpy as np
from gevent.threadpool import ThreadPool
from grpc.experimental import gevent as grpc_gevent
from locust import User
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from serveoff.loadtest.failures import grpc_error
from serveoff.loadtest.recorder import WindowRecorder

grpc_gevent.init_gevent()  # gRPC calls must yield to gevent like every other request

PREPARE, PREPARED, GO, WINDOW = "serveoff_prepare", "serveoff_prepared", "serveoff_go", "serveoff_window"
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
MAX_OUTSTANDING = 512  # open loop: requests in flight per process before arrivals queue in the generator
MAX_WAITING = 100_000  # open loop: arrivals that may wait for a slot; past it the oldest is not sent at all
NOT_SENT = "timeout before send (generator queue)"  # waited --timeout for one of the MAX_OUTSTANDING slots
QUEUE_FULL = "not sent (generator queue full)"  # MAX_WAITING arrivals were waiting already


@dataclass
class LoadState:
    """The load point this process runs now."""

    spec: dict | None = None
    recorder: WindowRecorder | None = None
    pool: ThreadPool | None = None  # in-process baselines: runs the model off the event loop
    runner: Any = None  # in-process baselines: the loaded model
    generator: int = 0  # this process's index among the load generators (seeds its arrival times)


STATE = LoadState()
_seeds = itertools.count()
_runners: dict[tuple[str, str], Any] = {}


def prepare(spec: dict) -> None:
    """Get ready to run ``spec``: set the user classes' connection settings, load an in-process model."""
    if STATE.recorder is not None:
        STATE.recorder.stop()
    STATE.spec, STATE.recorder = spec, None
    timeout = spec["timeout_s"]
    if spec["kind"] == "rest":
        HttpTarget.host = spec["address"]
        HttpTarget.network_timeout = HttpTarget.connection_timeout = timeout
        HttpTarget.concurrency = 1 if spec["load"]["loop"] == "closed" else MAX_OUTSTANDING
    if spec["kind"] == "inprocess":
        STATE.runner = load_runner(spec["inprocess"])
        STATE.pool = ThreadPool(spec["inprocess"]["instances"])


def load_runner(how: dict) -> Any:
    """The in-process model (loaded once per process), with the config's thread counts."""
    key = (how["framework"], how["artifact"])
    if key not in _runners:
        from pathlib import Path

        from serveoff.models.artifacts import ArtifactLayout
        from serveoff.serving.inprocess import inprocess_client
        from serveoff.serving.resources import ServerConfig

        layout = ArtifactLayout(Path(how["artifact"]), how["model"])
        _runners[key] = inprocess_client(how["framework"], layout, ServerConfig.from_json(how["config"]))
    return _runners[key]


def go(environment: Environment, measure_start: float) -> None:
    """Start recording the prepared point; windows are reported through ``environment.runner``."""
    spec = STATE.spec
    assert spec is not None, "serveoff_go before serveoff_prepare"
    worker = getattr(environment.runner, "client_id", None) or f"local-{os.getpid()}"
    STATE.generator = getattr(environment.runner, "worker_index", 0)
    STATE.recorder = WindowRecorder(
        spec["id"],
        worker,
        measure_start,
        spec["window_s"],
        spec["max_windows"],
        spec["timeout_s"] + 1.0,
        lambda window: environment.runner.send_message(WINDOW, window),
        open_loop=spec["load"]["loop"] == "open",
    )


def install(environment: Environment) -> None:
    """Register the generator side of serveoff's messages on ``environment.runner``."""
    runner = environment.runner

    def on_prepare(msg: Any, **_: Any) -> None:
        error = None
        try:
            prepare(msg.data)
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
        if spec["load"]["loop"] == "closed":
            while True:
                scheduled = time.monotonic()
                index = recorder.begin(scheduled)
                recorder.finish(index, scheduled, self.send(scheduled))
        else:
            self._open_loop(spec, recorder)

    def _open_loop(self, spec: dict, recorder: WindowRecorder) -> None:
        """Arrivals at scheduled times whatever the answers; latency counts from the scheduled time."""
        load = spec["load"]
        rng = random.Random(f"{spec['seed']}/{STATE.generator}/{next(_seeds)}")  # distinct per process
        rate, poisson = load["rate"] / spec["users"], load["arrival"] == "poisson"
        self._schedule = OpenSchedule(recorder, rate, poisson, rng, self.send, spec["timeout_s"])
        self._schedule.run()

    def on_stop(self) -> None:
        schedule = getattr(self, "_schedule", None)
        if schedule is not None:
            schedule.stop()

    def send(self, scheduled: float) -> str | None:
        """Send the prepared request once; the kind of error, or ``None`` when answered successfully."""
        raise NotImplementedError

    def fire(self, name: str, started: float, size: int, error: str | None) -> None:
        """Tell locust's own statistics (its web UI) about a request."""
        self.environment.events.request.fire(
            request_type=STATE.spec["kind"],
            name=name,
            response_time=(time.monotonic() - started) * 1000,
            response_length=size,
            exception=RuntimeError(error) if error else None,
            context={},
        )


class OpenSchedule:
    """One open-loop user's arrivals: each is counted in its window when due, whatever the sending does.

    Arrivals are sent at once while fewer than ``MAX_OUTSTANDING`` are in flight; the rest wait in a
    queue, oldest first, and one that waited ``timeout_s`` counts as ``NOT_SENT`` (past ``MAX_WAITING``
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
        send: Callable[[float], str | None],
        timeout_s: float,
    ) -> None:
        self.recorder, self.rate, self.poisson, self.rng = recorder, rate, poisson, rng
        self.send, self.timeout_s = send, timeout_s
        # a user spawned after measurement began still owes every arrival since then
        self.next_at = min(time.monotonic(), recorder.start) + self._gap()
        self.waiting: deque[tuple[int | None, float]] = deque()
        self.in_flight = 0
        self.senders = gevent.pool.Group()
        recorder.add_schedule(self.advance_to)

    def _gap(self) -> float:
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def run(self) -> None:
        """Release arrivals as they fall due, forever (the user's greenlet is killed to stop it)."""
        while True:
            self.advance_to(time.monotonic())
            gevent.sleep(max(0.0, self.next_at - time.monotonic()))

    def advance_to(self, now: float) -> None:
        """Count every arrival due by ``now`` in its window and send or queue it."""
        while self.next_at <= now:
            scheduled = self.next_at
            self.next_at += self._gap()
            index = self.recorder.begin(scheduled)
            if self.in_flight < MAX_OUTSTANDING:
                self.in_flight += 1
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
        """Send one arrival, then the queued ones, until none waits."""
        queued = False
        try:
            while True:
                self.recorder.sent(index, scheduled, queued)
                self.recorder.finish(index, scheduled, self.send(scheduled))
                self._expire(time.monotonic())
                if not self.waiting:
                    return
                (index, scheduled), queued = self.waiting.popleft(), True
        finally:
            self.in_flight -= 1

    def stop(self) -> None:
        self.senders.kill(block=False)


class HttpTarget(LoadLoop, FastHttpUser):
    """REST targets, through locust's FastHttpUser (geventhttpclient)."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    host = "http://127.0.0.1"
    max_retries = 0

    def send(self, scheduled: float) -> str | None:
        spec = STATE.spec
        with self.client.request(
            "POST", spec["path"], data=spec["body"], headers=spec["headers"], name=spec["name"],
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == 200:
                response.success()
                return None
            error = http_error(response.status_code, response.error)
            response.failure(error)
            return error


def http_error(status: int, exception: BaseException | None) -> str:
    """The kind of a failed HTTP request: ``HTTP 503``, ``timeout`` or ``connection <reason>``."""
    if status:
        return f"HTTP {status}"
    # geventhttpclient gives up on a timed-out request with RetriesExceeded, the timeout as its ``original``
    exception = getattr(exception, "original", None) or exception
    if isinstance(exception, TimeoutError | socket.timeout | gevent.Timeout):
        return "timeout"
    return f"connection {type(exception).__name__}" if exception else "connection failed"


class GrpcTarget(LoadLoop, User):
    """gRPC targets: the prepared request bytes sent over one channel per user."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    def on_start(self) -> None:
        spec = STATE.spec
        self.channel = grpc.insecure_channel(spec["address"], options=GRPC_OPTIONS)
        self.call = self.channel.unary_unary(spec["path"])  # bytes in, bytes out: no re-serializing

    def on_stop(self) -> None:
        super().on_stop()
        self.channel.close()

    def send(self, scheduled: float) -> str | None:
        spec = STATE.spec
        started = time.monotonic()
        error, size = None, 0
        try:
            size = len(self.call(spec["body"], timeout=spec["timeout_s"]))
        except grpc.RpcError as err:
            error = grpc_error(err.code(), err.details() or "")
        self.fire(spec["name"], started, size, error)
        return error


class InProcessTarget(LoadLoop, User):
    """In-process baselines: the model runs in this process, on a pool of ``instances`` threads."""

    tasks = [LoadLoop.drive]  # noqa: RUF012 - locust's task list

    def send(self, scheduled: float) -> str | None:
        spec = STATE.spec
        started = time.monotonic()
        error = None
        try:
            STATE.pool.spawn(STATE.runner.predict, batch_of(spec)).get()
        except Exception as err:  # a failing model is an error to count, like a server's HTTP 500
            error = f"error {type(err).__name__}"
        self.fire(spec["name"], started, 0, error)
        return error


_batches: dict[str, np.ndarray] = {}


def batch_of(spec: dict) -> np.ndarray:
    """The point's input batch, decoded once."""
    if spec["id"] not in _batches:
        _batches.clear()
        raw = spec["inprocess"]
        _batches[spec["id"]] = np.frombuffer(spec["body"], dtype=raw["dtype"]).reshape(raw["shape"]).copy()
    return _batches[spec["id"]]


USER_CLASSES: dict[str, type[User]] = {"rest": HttpTarget, "grpc": GrpcTarget, "inprocess": InProcessTarget}
