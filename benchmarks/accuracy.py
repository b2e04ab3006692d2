"""serveoff's figures against reference clients on real TorchServe, side by side in one run (issue 14).

Run: ``python benchmarks/accuracy.py [--rounds 3] [--duration 5] [--rate 200] [--json out.json]``. Needs
``wrk`` (``apt-get install wrk``), Java 17 and TorchServe (``./setup.sh``), and two CPUs: TorchServe
(digits-mlp, one worker) on the first, every load generator (serveoff, wrk, the reference clients of
``reference.py``) on the second. The server is warmed until it settles (serveoff's own warm-up), then
each round measures, interleaved and alternating which goes first:

- closed loop, REST, c=1 and c=4: serveoff vs wrk (p50 within 5% or 50 µs; throughput within 5%);
- closed loop, gRPC, c=1: serveoff vs a plain sequential grpcio loop (p50 within 5%);
- open loop, REST, a constant light rate: serveoff vs a raw-socket client timing from the schedule (p50
  within 10%), with serveoff's send-lag p99;

and the first point measured after the warm-up is measured again at the end (agreement: the 95%
intervals of p50 and of throughput overlap). Each bound is printed with PASS or FAIL. It is not a test.
"""

from gevent import monkey

monkey.patch_all()  # locust needs gevent's patching before requests, ssl and friends are imported

# ruff: noqa: E402 - every import below must come after monkey-patching
import argparse
import json
import os
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


@dataclass
class Figure:
    """One measurement: median latency and throughput (serveoff's with their 95% intervals)."""

    p50_us: float
    rps: float
    p50_interval: tuple[float, float] | None = None
    rps_interval: tuple[float, float] | None = None
    send_lag_p99_us: float | None = None


@dataclass(frozen=True)
class Bound:
    """One of the issue's bounds, checked on the rounds' medians."""

    name: str
    serveoff: float
    reference: float
    relative: float  # allowed |serveoff - reference| / reference
    absolute: float = 0.0  # or this much in the figure's unit, whichever is larger

    @property
    def passed(self) -> bool:
        return abs(self.serveoff - self.reference) <= max(self.relative * self.reference, self.absolute)


class Bench:
    """TorchServe on one CPU, serveoff's engine and the references on another."""

    def __init__(self, args: argparse.Namespace, layout: ArtifactLayout, workdir: Path, cpus: tuple) -> None:
        self.args, self.layout, self.workdir = args, layout, workdir
        self.server_cpu, self.loadgen_cpu = cpus
        config = server_config("matched", cpus=(self.server_cpu,))
        port_base = free_port_base(TorchServe.port_count)
        self.server = TorchServe([layout], config, workdir / "torchserve", port_base)
        self.engine: LoadEngine | None = None
        self.policy = WindowPolicy(warmup_s=1.0, window_s=args.duration / 3, min_windows=3, max_windows=3)
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

    def serveoff(self, protocol: str, point: LoadPoint) -> Figure:
        result = measure(self.engine, self.subject(protocol), point, self.policy, timeout_s=10, seed=0)
        summary = result["summary"]
        p50, rps = summary["latency_us"]["p50"], summary["throughput_rps"]
        lag = (summary.get("send_lag_us") or {}).get("p99")
        lag = lag.get("value") if isinstance(lag, dict) else lag
        return Figure(p50["value"], rps["value"], (p50["low"], p50["high"]), (rps["low"], rps["high"]), lag)

    def warm(self) -> str:
        found = settle(self.engine, self.subject("rest"), closed(1), WindowPolicy(), timeout_s=10, seed=0)
        return describe(found) if found else "no warm-up"

    def wrk(self, connections: int) -> Figure:
        wire = self.wire["rest"]
        argv = [hvw.find_binary("wrk"), "-t1", f"-c{connections}", f"-d{self.args.duration:g}s", "--latency",
                "-s", str(self.workdir / "post.lua"), wire.address + wire.path]  # fmt: skip
        done = subprocess.run(hvw.pinned(argv, self.loadgen_cpu), capture_output=True, text=True,
                              timeout=self.args.duration + hvw.WRK_MARGIN_S, check=True)  # fmt: skip
        figures = hvw.parse_wrk(done.stdout)
        return Figure(figures.p50_us, figures.rps)

    def reference(self, kind: str, rate: float | None = None) -> Figure:
        protocol = "grpc" if kind == "grpc" else "rest"
        wire = self.wire[protocol]
        argv = [sys.executable, str(REFERENCE), kind, f"{self.args.duration:g}", wire.address, wire.path,
                str(self.workdir / f"{protocol}.body"), *([f"{rate:g}"] if rate else [])]  # fmt: skip
        done = subprocess.run(hvw.pinned(argv, self.loadgen_cpu), capture_output=True, text=True,
                              timeout=self.args.duration + 60, check=True)  # fmt: skip
        found = json.loads(done.stdout.splitlines()[-1])
        return Figure(found["p50_us"], found["rps"])


def one_round(bench: Bench, index: int, rate: float) -> dict[str, tuple[Figure, Figure]]:
    """Every comparison once, each pair in alternating order: name -> (serveoff, reference)."""
    pairs = {
        "rest c=1": (lambda: bench.serveoff("rest", closed(1)), lambda: bench.wrk(1)),
        "rest c=4": (lambda: bench.serveoff("rest", closed(4)), lambda: bench.wrk(4)),
        "grpc c=1": (lambda: bench.serveoff("grpc", closed(1)), lambda: bench.reference("grpc")),
        f"open {rate:g}/s": (lambda: bench.serveoff("rest", open_loop(rate, "constant")),
                             lambda: bench.reference("rest-open", rate)),
    }  # fmt: skip
    found = {}
    for name, (ours, theirs) in pairs.items():
        if index % 2 == 0:
            mine, ref = ours(), theirs()
        else:
            ref, mine = theirs(), ours()
        found[name] = (mine, ref)
        print(f"  round {index + 1} {name:<12} serveoff p50 {mine.p50_us:8.1f} us {mine.rps:8.1f} req/s | "
              f"reference p50 {ref.p50_us:8.1f} us {ref.rps:8.1f} req/s", flush=True)  # fmt: skip
    return found


def bounds(rounds: list[dict[str, tuple[Figure, Figure]]], rate: float) -> list[Bound]:
    """The issue's bounds on the medians over rounds."""

    def median(name: str, side: int, field: str) -> float:
        return statistics.median(getattr(r[name][side], field) for r in rounds)

    found = []
    for c in (1, 4):
        name = f"rest c={c}"
        found.append(Bound(f"REST c={c} p50 (us) vs wrk", median(name, 0, "p50_us"),
                           median(name, 1, "p50_us"), 0.05, 50.0))  # fmt: skip
        found.append(Bound(f"REST c={c} throughput vs wrk", median(name, 0, "rps"),
                           median(name, 1, "rps"), 0.05))  # fmt: skip
    found.append(Bound("gRPC c=1 p50 (us) vs grpcio loop", median("grpc c=1", 0, "p50_us"),
                       median("grpc c=1", 1, "p50_us"), 0.05))  # fmt: skip
    name = f"open {rate:g}/s"
    found.append(Bound(f"open loop {rate:g}/s p50 (us) vs raw client", median(name, 0, "p50_us"),
                       median(name, 1, "p50_us"), 0.10))  # fmt: skip
    return found


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and None not in (*a, *b) and a[0] <= b[1] and b[0] <= a[1]


def report(found: list[Bound], first: Figure, again: Figure, lags: list[float]) -> dict:
    """Print every bound with PASS or FAIL; returns the figures."""
    print(f"\n{'bound':<42} {'serveoff':>10} {'reference':>10} {'ratio':>7} {'allowed':>14}  verdict")
    for b in found:
        allowed = f"±{b.relative:.0%}" + (f" or {b.absolute:g}" if b.absolute else "")
        print(f"{b.name:<42} {b.serveoff:>10.1f} {b.reference:>10.1f} {b.serveoff / b.reference:>7.3f} "
              f"{allowed:>14}  {'PASS' if b.passed else 'FAIL'}")  # fmt: skip
    agree = overlap(first.p50_interval, again.p50_interval)
    agree = agree and overlap(first.rps_interval, again.rps_interval)
    print(f"{'first point vs its re-measurement (c=1 REST)':<42} p50 {first.p50_us:.1f} {first.p50_interval} "
          f"vs {again.p50_us:.1f} {again.p50_interval} us; {first.rps:.1f} {first.rps_interval} vs "
          f"{again.rps:.1f} {again.rps_interval} req/s  {'PASS' if agree else 'FAIL'} (intervals overlap)")
    lag = max(lags) if lags else None
    print(f"open loop send-lag p99 (worst round): {f'{lag:.1f} us' if lag is not None else 'not reported'}")
    return {"bounds": [vars(b) | {"passed": b.passed} for b in found], "first_point": vars(first),
            "re_measured": vars(again), "first_point_agrees": agree, "send_lag_p99_us": lag}  # fmt: skip


def _measure_all(bench: Bench, args: argparse.Namespace) -> tuple[Figure, list, Figure]:
    """Warm TorchServe, then the first point, the rounds and the first point again."""
    bench.engine = LoadEngine(0)
    try:
        print(f"TorchServe on CPU {bench.server_cpu}, load generators on CPU {bench.loadgen_cpu}; "
              f"{bench.warm()}", flush=True)  # fmt: skip
        first = bench.serveoff("rest", closed(1))
        rounds = [one_round(bench, index, args.rate) for index in range(args.rounds)]
        return first, rounds, bench.serveoff("rest", closed(1))
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
    lags = [r[f"open {args.rate:g}/s"][0].send_lag_p99_us for r in rounds]
    figures = report(bounds(rounds, args.rate), first, again, [lag for lag in lags if lag is not None])
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
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
