"""serveoff's figures against reference clients on real TorchServe, side by side in one run (issue 14).

Run: ``python benchmarks/accuracy.py [--rounds 6] [--duration 4] [--rate 200] [--json out.json]``. Needs
``wrk`` (``apt-get install wrk``), Java 17 and TorchServe (``./setup.sh``), and two CPUs: TorchServe
(digits-mlp, one worker) on the first, every load generator (serveoff, wrk, the reference clients of
``reference.py``) on the second. The server is warmed until it settles (serveoff's own warm-up), then
each round measures, interleaved and alternating which goes first:

- closed loop, REST, c=1 and c=4: serveoff vs wrk (p50 within 5% or 50 µs; throughput within 5%), and
  at c=1 the raw-socket loop of ``reference.py`` as a third client;
- closed loop, gRPC, c=1: serveoff vs a plain sequential grpcio loop (p50 within 5%);
- open loop, REST, a constant light rate: serveoff vs a raw-socket client timing from the schedule (p50
  within 10%), with serveoff's send-lag p99.

TorchServe itself drifts by several percent from one measurement to the next, so each bound is checked on
the median over rounds of the ratio within each pair (the two measurements of a pair are adjacent in time),
and the spread of those ratios is printed. Every closed-loop figure is also checked against Little's law
(throughput x mean latency / concurrency, the share of time a connection had a request outstanding): a
tool whose throughput and latencies disagree shows there. Every client, wrk included, gets the same 1 s
warm-up on its own connections before its measured seconds (wrk's in a discarded run of its own).

The first point of a sweep is measured as ``serveoff run`` measures it (its default windows, right after
the warm-up until settled) and again, the same way, at the end; they agree when their 95% intervals of p50
and of throughput overlap. Each bound is printed with PASS or FAIL. It is not a test.
"""

from gevent import monkey

monkey.patch_all()  # locust needs gevent's patching before requests, ssl and friends are imported

# ruff: noqa: E402 - every import below must come after monkey-patching
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import harness_vs_wrk as hvw  # this script's own folder is first on sys.path

from serveoff.loadtest.bench import input_batch
from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.histograms import decode
from serveoff.loadtest.measure import Subject, measure
from serveoff.loadtest.plan import LoadPoint, WindowPolicy, closed, open_loop
from serveoff.loadtest.warmup import describe, settle
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import build_zoo_model
from serveoff.serving.process import free_port_base
from serveoff.serving.resources import pinned, server_config
from serveoff.serving.targets import Target
from serveoff.serving.torchserve.server import TorchServe

MODEL = "digits-mlp"
REFERENCE = Path(__file__).with_name("reference.py")
WARMUP_S = 1.0  # every client's warm-up on its own connections before its measured seconds


@dataclass
class Figure:
    """One measurement: median and mean latency, throughput (serveoff's with their 95% intervals)."""

    p50_us: float
    rps: float
    mean_us: float
    p50_interval: tuple[float, float] | None = None
    rps_interval: tuple[float, float] | None = None
    send_lag_p99_us: float | None = None

    def busy(self, concurrency: int) -> float:
        """Little's law: throughput x mean latency / concurrency, the share of the time each connection had
        a request outstanding (1 minus the client's own gap between a reply and the next request)."""
        return self.rps * self.mean_us * 1e-6 / concurrency


@dataclass(frozen=True)
class Bound:
    """One of the issue's bounds, checked on the median over rounds of each pair's ratio."""

    name: str
    serveoff: float  # the median of serveoff's figures over the rounds
    reference: float  # the median of the reference's
    ratios: tuple[float, ...]  # serveoff / reference within each round's pair
    relative: float  # allowed |median ratio - 1|
    absolute: float = 0.0  # or this much in the figure's unit (on the median difference), whichever is larger
    differences: tuple[float, ...] = ()  # serveoff - reference within each round's pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool:
        if abs(self.ratio - 1) <= self.relative:
            return True
        return bool(self.differences) and abs(statistics.median(self.differences)) <= self.absolute


class Bench:
    """TorchServe on one CPU, serveoff's engine and the references on another."""

    def __init__(self, args: argparse.Namespace, layout: ArtifactLayout, workdir: Path, cpus: tuple) -> None:
        self.args, self.layout, self.workdir = args, layout, workdir
        self.server_cpu, self.loadgen_cpu = cpus
        config = server_config("matched", cpus=(self.server_cpu,))
        port_base = free_port_base(TorchServe.port_count)
        self.server = TorchServe([layout], config, workdir / "torchserve", port_base)
        self.engine: LoadEngine | None = None
        self.policy = WindowPolicy(warmup_s=WARMUP_S, window_s=args.duration / 4, min_windows=4,
                                   max_windows=4)  # fmt: skip
        self.wire = {}

    def start(self) -> None:
        self.server.start()
        batch = input_batch(self.layout, 1)
        for protocol in ("rest", "grpc"):
            wire = TorchServe.wire_request(self.server.endpoints, self.layout, protocol, batch)
            self.wire[protocol] = wire
            (self.workdir / f"{protocol}.body").write_bytes(wire.body)
        body = self.wire["rest"].body.decode()
        script = f'wrk.method = "POST"\nwrk.body = [==[{body}]==]\n'
        script += 'wrk.headers["Content-Type"] = "application/json"\n'
        (self.workdir / "post.lua").write_text(script)

    def stop(self) -> None:
        self.server.stop()

    def subject(self, protocol: str) -> Subject:
        wire = self.wire[protocol]
        request = {"kind": protocol, "address": wire.address, "path": wire.path, "body": wire.body,
                   "headers": wire.headers}  # fmt: skip
        return Subject(Target("torchserve", protocol), MODEL, request, 1, "torchserve")

    def serveoff(self, protocol: str, point: LoadPoint, policy: WindowPolicy | None = None) -> Figure:
        result = measure(self.engine, self.subject(protocol), point, policy or self.policy, timeout_s=10,
                         seed=0)  # fmt: skip
        summary = result["summary"]
        p50, rps = summary["latency_us"]["p50"], summary["throughput_rps"]
        lag = (summary.get("send_lag_us") or {}).get("p99")
        lag = lag.get("value") if isinstance(lag, dict) else lag
        mean = decode(result["histogram"]).get_mean_value()
        return Figure(p50["value"], rps["value"], mean, (p50["low"], p50["high"]), (rps["low"], rps["high"]),
                      lag)  # fmt: skip

    def warm(self) -> str:
        found = settle(self.engine, self.subject("rest"), closed(1), WindowPolicy(), timeout_s=10, seed=0)
        return describe(found) if found else "no warm-up"

    def wrk(self, connections: int) -> Figure:
        wire = self.wire["rest"]
        figures = None
        for seconds in (WARMUP_S, self.args.duration):  # the first run is the warm-up, discarded
            argv = [hvw.find_binary("wrk"), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
                    str(self.workdir / "post.lua"), wire.address + wire.path]  # fmt: skip
            done = subprocess.run(hvw.pinned(argv, self.loadgen_cpu), capture_output=True, text=True,
                                  timeout=seconds + hvw.WRK_MARGIN_S, check=True)  # fmt: skip
            figures = hvw.parse_wrk(done.stdout)
            mean = re.search(r"^\s*Latency\s+(\S+)", done.stdout, re.M)
        return Figure(figures.p50_us, figures.rps, hvw.to_us(mean.group(1)) if mean else float("nan"))

    def reference(self, kind: str, rate: float | None = None) -> Figure:
        protocol = "grpc" if kind == "grpc" else "rest"
        wire = self.wire[protocol]
        argv = [sys.executable, str(REFERENCE), kind, f"{self.args.duration:g}", wire.address, wire.path,
                str(self.workdir / f"{protocol}.body"), f"{rate or 0:g}", f"{WARMUP_S:g}"]  # fmt: skip
        done = subprocess.run(hvw.pinned(argv, self.loadgen_cpu), capture_output=True, text=True,
                              timeout=self.args.duration + 60, check=True)  # fmt: skip
        found = json.loads(done.stdout.splitlines()[-1])
        return Figure(found["p50_us"], found["rps"], found["mean_us"])


PAIRS = {  # name -> (serveoff's measurement, the reference's), as functions of the bench and the rate
    "rest c=1": (lambda b, _: b.serveoff("rest", closed(1)), lambda b, _: b.wrk(1)),
    "rest c=1 raw": (lambda b, _: b.serveoff("rest", closed(1)), lambda b, _: b.reference("rest")),
    "rest c=4": (lambda b, _: b.serveoff("rest", closed(4)), lambda b, _: b.wrk(4)),
    "grpc c=1": (lambda b, _: b.serveoff("grpc", closed(1)), lambda b, _: b.reference("grpc")),
    "open": (lambda b, r: b.serveoff("rest", open_loop(r, "constant")),
             lambda b, r: b.reference("rest-open", r)),
}  # fmt: skip
CONCURRENCY = {"rest c=1": 1, "rest c=1 raw": 1, "rest c=4": 4, "grpc c=1": 1}


def one_round(bench: Bench, index: int, rate: float) -> dict[str, tuple[Figure, Figure]]:
    """Every comparison once, each pair in alternating order: name -> (serveoff, reference)."""
    found = {}
    for name, (ours, theirs) in PAIRS.items():
        if index % 2 == 0:
            mine, ref = ours(bench, rate), theirs(bench, rate)
        else:
            ref, mine = theirs(bench, rate), ours(bench, rate)
        found[name] = (mine, ref)
        print(f"  round {index + 1} {name:<12} serveoff p50 {mine.p50_us:7.1f} mean {mine.mean_us:7.1f} us "
              f"{mine.rps:7.1f} req/s | reference p50 {ref.p50_us:7.1f} mean {ref.mean_us:7.1f} us "
              f"{ref.rps:7.1f} req/s", flush=True)  # fmt: skip
    return found


def _bound(rounds: list, name: str, label: str, field: str, relative: float, absolute: float = 0.0) -> Bound:
    pairs = [(getattr(r[name][0], field), getattr(r[name][1], field)) for r in rounds]
    ratios, differences = tuple(a / b for a, b in pairs), tuple(a - b for a, b in pairs)
    return Bound(label, statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
                 ratios, relative, absolute, differences)  # fmt: skip


def bounds(rounds: list[dict[str, tuple[Figure, Figure]]], rate: float) -> list[Bound]:
    """The issue's bounds, on the median over rounds of each pair's ratio."""
    found = []
    for c in (1, 4):
        found.append(_bound(rounds, f"rest c={c}", f"REST c={c} p50 (us) vs wrk", "p50_us", 0.05, 50.0))
        found.append(_bound(rounds, f"rest c={c}", f"REST c={c} throughput vs wrk", "rps", 0.05))
    found.append(_bound(rounds, "rest c=1 raw", "REST c=1 p50 (us) vs raw loop", "p50_us", 0.05, 50.0))
    found.append(_bound(rounds, "rest c=1 raw", "REST c=1 throughput vs raw loop", "rps", 0.05))
    found.append(_bound(rounds, "grpc c=1", "gRPC c=1 p50 (us) vs grpcio loop", "p50_us", 0.05))
    found.append(_bound(rounds, "open", f"open loop {rate:g}/s p50 (us) vs raw client", "p50_us", 0.10))
    return found


def littles_law(rounds: list[dict[str, tuple[Figure, Figure]]]) -> dict[str, tuple[float, float]]:
    """Per closed-loop pair, the median over rounds of each side's busy share (Little's law)."""
    return {name: (statistics.median(r[name][0].busy(c) for r in rounds),
                   statistics.median(r[name][1].busy(c) for r in rounds))
            for name, c in CONCURRENCY.items()}  # fmt: skip


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and None not in (*a, *b) and a[0] <= b[1] and b[0] <= a[1]


def span(interval: tuple[float, float] | None) -> str:
    """An interval as ``(low-high)`` with no decimals, or ``(none)``."""
    if interval is None or None in interval:
        return "(none)"
    return f"({interval[0]:.0f}-{interval[1]:.0f})"


def report(rounds: list, rate: float, first: Figure, again: Figure) -> dict:
    """Print every bound with PASS or FAIL, Little's law per pair and the first point; returns the figures."""
    found = bounds(rounds, rate)
    print(f"\n{'bound':<40} {'serveoff':>9} {'reference':>9} {'ratio':>6} {'ratios (min-max)':>16} "
          f"{'allowed':>12}  verdict")  # fmt: skip
    for b in found:
        allowed = f"±{b.relative:.0%}" + (f" or {b.absolute:g}" if b.absolute else "")
        spread = f"{min(b.ratios):.3f}-{max(b.ratios):.3f}"
        print(f"{b.name:<40} {b.serveoff:>9.1f} {b.reference:>9.1f} {b.ratio:>6.3f} {spread:>16} "
              f"{allowed:>12}  {'PASS' if b.passed else 'FAIL'}")  # fmt: skip
    busy = littles_law(rounds)
    print("\nLittle's law, throughput x mean latency / concurrency (median over rounds):")
    for name, (mine, ref) in busy.items():
        print(f"  {name:<12} serveoff {mine:.3f}  reference {ref:.3f}")
    p50_agrees = overlap(first.p50_interval, again.p50_interval)
    rps_agrees = overlap(first.rps_interval, again.rps_interval)
    agree = p50_agrees and rps_agrees
    print("\nfirst point vs its re-measurement (c=1 REST, serveoff run's windows):")
    print(
        f"  p50 {first.p50_us:.0f} {span(first.p50_interval)} vs {again.p50_us:.0f} "
        f"{span(again.p50_interval)} us: intervals {'overlap' if p50_agrees else 'do not overlap'}"
    )
    print(
        f"  throughput {first.rps:.1f} {span(first.rps_interval)} vs {again.rps:.1f} "
        f"{span(again.rps_interval)} req/s: intervals {'overlap' if rps_agrees else 'do not overlap'}"
    )
    print(f"  first point {'PASS' if agree else 'FAIL'}")
    lags = [r["open"][0].send_lag_p99_us for r in rounds if r["open"][0].send_lag_p99_us is not None]
    print(f"open loop send-lag p99 (worst round): {f'{max(lags):.1f} us' if lags else 'not reported'}")
    return {"bounds": [vars(b) | {"ratio": b.ratio, "passed": b.passed} for b in found],
            "littles_law": busy, "first_point": vars(first), "re_measured": vars(again),
            "first_point_agrees": agree, "send_lag_p99_us": max(lags) if lags else None,
            "rounds": [{name: [vars(f) for f in pair] for name, pair in r.items()}
                       for r in rounds]}  # fmt: skip


def _measure_all(bench: Bench, args: argparse.Namespace) -> tuple[Figure, list, Figure]:
    """Warm TorchServe, then the first point, the rounds and the first point again."""
    bench.engine = LoadEngine(0)
    try:
        print(f"TorchServe on CPU {bench.server_cpu}, load generators on CPU {bench.loadgen_cpu}; "
              f"{bench.warm()}", flush=True)  # fmt: skip
        first = bench.serveoff("rest", closed(1), WindowPolicy())  # as `serveoff run` measures it
        rounds = [one_round(bench, index, args.rate) for index in range(args.rounds)]
        return first, rounds, bench.serveoff("rest", closed(1), WindowPolicy())
    finally:
        bench.engine.close()


def run(args: argparse.Namespace) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("accuracy: needs two CPUs, one for TorchServe and one for the load generators")
    layout = ArtifactLayout(build_zoo_model(MODEL, args.artifacts, log=print).root, MODEL)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="serveoff-accuracy-") as tmp:
        bench = Bench(args, layout, Path(tmp), (cpus[0], cpus[1]))
        try:
            bench.start()  # before this process is pinned: the server's CPU is checked against its own
            with pinned((cpus[1],)):
                first, rounds, again = _measure_all(bench, args)
        finally:
            bench.stop()
    figures = report(rounds, args.rate, first, again)
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement (default 4)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s (default 200)")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="where digits-mlp is built")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--rounds must be at least 1, --duration and --rate positive")
    return args


def main() -> int:
    args = parse_args()
    if hvw.find_binary("wrk") is None:
        print("accuracy: wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    figures = run(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
