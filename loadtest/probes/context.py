"""What every probe shares: its settings, the server under probe, one request sent once, load timelines."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import grpc
import numpy as np
import requests

from serveoff.errors import ServeoffError
from serveoff.loadtest.bench import input_batch
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.histograms import summary
from serveoff.loadtest.measure import PointAborted, Subject, measure
from serveoff.loadtest.plan import LoadPoint, WindowPolicy
from serveoff.loadtest.probes.schema import PROBES, ProbeResult, Sample
from serveoff.loadtest.send import GRPC_OPTIONS
from serveoff.loadtest.stats import Window
from serveoff.models.artifacts import ArtifactLayout
from serveoff.serving.base import Server, WireRequest, is_test_double
from serveoff.serving.container import ContainerServer
from serveoff.serving.targets import Target
from serveoff.serving.usage import ProcessUsage


@dataclass(frozen=True)
class ProbeSettings:
    """How long each probe runs; every probe is bounded by these (and each request by ``timeout_s``)."""

    overload_s: float = 6.0  # each overload level (2x, 5x capacity)
    recovery_s: float = 6.0  # the watch after each overload for the return to baseline latency
    failure_s: float = 10.0  # the load through which the inference process is killed
    update_s: float = 10.0  # the load through which the new version rolls out
    soak_s: float = 30.0
    steady_s: float = 10.0  # cold start: the sequential requests after the first answer, at most
    slice_s: float = 0.5  # one timeline sample
    concurrency: int = 2  # the closed-loop load of the failure, update and soak probes
    timeout_s: float = 5.0  # every request
    start_timeout_s: float = 180.0  # a server's launch
    probes: tuple[str, ...] = PROBES  # the ones to run (the cold start always runs)

    def to_json(self) -> dict[str, float | int | str]:
        return self.__dict__ | {"probes": ", ".join(self.probes)}


@dataclass
class Probed:
    """One running server serving ``layout``, probed over ``protocol`` (its REST one): natively, or in a
    container (``server`` is then the launcher, which holds the server)."""

    server: Server | ContainerServer
    layout: ArtifactLayout
    protocol: str
    settings: ProbeSettings
    engine: LoadEngine

    @property
    def own(self) -> Server:
        """The server itself: its ports, work directory and what the probes need to know of it."""
        return self.server.server if isinstance(self.server, ContainerServer) else self.server

    @cached_property
    def source(self) -> str:
        """The server and its version, read once (TF Serving's runs its binary)."""
        own = next(iter(self.server.versions().values()), "of unknown version")
        return f"{self.server.name} {own}"

    @property
    def test_double(self) -> bool:
        return is_test_double(self.source)

    def result(self, probe: str) -> ProbeResult:
        """An empty result of ``probe`` on this server and model."""
        return ProbeResult(probe, self.server.name, self.layout.name, self.source, self.test_double)

    def request(self, batch_size: int = 1) -> WireRequest:
        return self.server.wire_request(self.server.endpoints, self.layout, self.protocol,
                                        input_batch(self.layout, batch_size))  # fmt: skip

    def subject(self) -> Subject:
        wire = self.request()
        request = {"kind": wire.protocol, "address": wire.address, "path": wire.path, "body": wire.body,
                   "headers": wire.headers}  # fmt: skip
        return Subject(Target(self.server.name, self.protocol), self.layout.name, request, 1, self.source,
                       usage=ProcessUsage(self.server.processes))  # fmt: skip


@dataclass(frozen=True)
class Reply:
    """One request's outcome: the HTTP status or gRPC code name, its body, and how long it took."""

    status: str
    body: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status in ("200", "OK")


def send_once(wire: WireRequest, timeout_s: float) -> Reply:
    """Send ``wire`` once, the very bytes the load generator sends; never raises for a server's answer or
    silence. Unlike ``loadtest/send.py``'s ``send`` (a successful reply or an error), it keeps every
    status and error body: the bad-input probe records them."""
    started = time.monotonic()
    try:
        if wire.protocol == "grpc":
            with grpc.insecure_channel(wire.address, options=GRPC_OPTIONS) as channel:
                body = channel.unary_unary(wire.path)(wire.body, timeout=timeout_s)
            return Reply("OK", body, time.monotonic() - started)
        response = requests.post(wire.address + wire.path, data=wire.body, headers=wire.headers,
                                 timeout=timeout_s)  # fmt: skip
        return Reply(str(response.status_code), response.content, time.monotonic() - started)
    except grpc.RpcError as err:
        detail = (err.details() or "").encode() if hasattr(err, "details") else b""
        code = err.code().name if hasattr(err, "code") else "UNKNOWN"
        return Reply(code, detail, time.monotonic() - started)
    except requests.RequestException as err:
        return Reply(f"no answer ({type(err).__name__})", b"", time.monotonic() - started)


def correct(probed: Probed, reply: Reply, expected: np.ndarray | None) -> bool:
    """Whether ``reply`` is a good answer (equal to ``expected`` when given)."""
    if not reply.ok:
        return False
    try:
        got = probed.server.decode_reply(probed.layout, probed.protocol, reply.body)
    except (ServeoffError, ValueError, KeyError):
        return False
    return expected is None or (got.shape == expected.shape and bool(np.allclose(got, expected, atol=1e-3)))


@dataclass
class Timeline:
    """A load run in slices: one ``Sample`` each, and its failed requests by kind."""

    samples: list[Sample]
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.samples)


def timeline(probed: Probed, point: LoadPoint, seconds: float, phase: str, t0: float,
             on_slice: Callable[[int], None] = lambda _: None) -> Timeline:  # fmt: skip
    """Run ``point`` for ``seconds`` in slices (``on_slice`` after each); a failed server ends it early."""
    window = probed.settings.slice_s
    count = max(1, min(100, round(seconds / window)))
    policy = replace(WindowPolicy(), warmup_s=0.0, window_s=window, min_windows=count, max_windows=count)
    closed_at: list[float] = []  # when each slice was reported: the first one dates the run's start

    def each(index: int) -> None:
        closed_at.append(time.monotonic())
        on_slice(index)

    try:
        result = measure(probed.engine, probed.subject(), point, policy, timeout_s=probed.settings.timeout_s,
                         seed=0, phase="probe", on_window=each)  # fmt: skip
    except PointAborted as err:
        result = err.result
    start = (closed_at[0] if closed_at else time.monotonic()) - window - t0
    samples = [_sample(w, start + (i + 1) * window, phase) for i, w in enumerate(result["windows"])]
    return Timeline(samples, errors_of(result["windows"]))


def _sample(doc: dict, t_s: float, phase: str) -> Sample:
    window = Window.from_json(doc)
    stats = summary(window.histogram)
    ms = {k: None if stats.get(k) is None else round(stats[k] / 1000, 3) for k in ("p50", "p99")}
    return Sample(round(t_s, 2), window.requests, window.failed, ms["p50"], ms["p99"], phase)


def errors_of(windows: list[dict]) -> dict[str, int]:
    """Failed requests by kind over ``windows``."""
    total: dict[str, int] = {}
    for doc in windows:
        for kind, n in doc["errors"].items():
            total[kind] = total.get(kind, 0) + n
    return total
