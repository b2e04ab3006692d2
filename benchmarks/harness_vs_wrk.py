"""serveoff's load harness against wrk on a trivial local nginx endpoint: capacity and p50 latency.

Run: ``python benchmarks/harness_vs_wrk.py [--duration 10] [--json out.json]``. Needs ``wrk`` and
``nginx-light`` (``apt-get install wrk nginx-light``). Both generators run closed loops: N users or
connections, each sending one request and waiting for its answer before the next.
"""

from gevent import monkey

monkey.patch_all()  # locust needs gevent's patching before requests, ssl and friends are imported

# ruff: noqa: E402 - every import below must come after monkey-patching
import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from serveoff.loadtest.engine import LoadEngine
from serveoff.loadtest.measure import PointAborted, Subject, measure
from serveoff.loadtest.plan import WindowPolicy, closed
from serveoff.serving.targets import Target

HOST = "127.0.0.1"
BODY = b"{}"
NGINX_START_TIMEOUT_S = 10.0
NGINX_STOP_GRACE_S = 5.0
WRK_MARGIN_S = 30.0  # wrk ends itself after --duration; past this margin it is killed
WINDOWS = 3
INSTALL_HINT = "harness_vs_wrk: wrk and nginx are needed: apt-get install wrk nginx-light"

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    server {{
        listen {host}:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Pinning:
    """Which CPU the endpoint and the load generators run on (``None``: not pinned)."""

    server: int | None
    generator: int | None

    def describe(self) -> str:
        if self.server is None:
            return "none (fewer than 2 CPUs available)"
        return f"nginx -> CPU {self.server}; load generators (harness process, wrk) -> CPU {self.generator}"


@dataclass
class Figures:
    """One generator's result at one connection count."""

    rps: float
    p50_us: float
    extra: dict


def find_binary(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (nginx lives there and PATH may lack it)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def choose_pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return Pinning(None, None)
    return Pinning(cpus[0], cpus[1])


def pin_this_process(cpu: int) -> None:
    """Pin every thread of this process (threads started later inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), {cpu})


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """``argv`` run on ``cpu`` through taskset (which execs it, so the PID stays the program's)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_nginx(nginx: str, tmp: Path, port: int, cpu: int | None) -> subprocess.Popen:
    """nginx in the foreground, one process, answering ``ok`` on every path and method."""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, host=HOST, port=port))
    argv = pinned([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)], cpu)
    log = (tmp / "stderr.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + NGINX_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"nginx exited with code {proc.returncode}: {(tmp / 'stderr.log').read_text()}"
            )
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"nginx did not listen on {HOST}:{port} within {NGINX_START_TIMEOUT_S:.0f} s")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's PID, SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=NGINX_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=NGINX_STOP_GRACE_S)


def to_us(text: str) -> float:
    """A wrk duration such as ``73.00us``, ``1.20ms``, ``2.00s`` or ``1.00m`` in microseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk time {text!r}")
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}[match.group(2)]
    return float(match.group(1)) * scale


def parse_wrk(output: str) -> Figures:
    """Requests/sec, the 50% latency and any errors from ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M)
    p50 = re.search(r"^\s*50%\s+(\S+)", output, re.M)
    if not rps or not p50:
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    errors = re.findall(r"^\s*(Socket errors:.*|Non-2xx or 3xx responses:.*)$", output, re.M)
    requests = re.search(r"^\s*(\d+) requests in", output, re.M)
    extra = {"requests": int(requests.group(1)) if requests else None, "errors": errors}
    return Figures(float(rps.group(1)), to_us(p50.group(1)), extra)


def run_wrk(wrk: str, script: Path, port: int, connections: int, duration_s: float, cpu: int | None) -> str:
    """One wrk run (one thread, ``connections`` connections); its output."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "-s", str(script)]
    argv = pinned([*argv, f"http://{HOST}:{port}/"], cpu)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + WRK_MARGIN_S)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with code {done.returncode}: {done.stderr or done.stdout}")
    return done.stdout


def measure_wrk(
    wrk: str, script: Path, port: int, connections: int, args: argparse.Namespace, cpu: int | None
) -> Figures:
    """A discarded warm-up run as long as the harness's, then the measured run."""
    if args.warmup > 0:
        run_wrk(wrk, script, port, connections, args.warmup, cpu)
    return parse_wrk(run_wrk(wrk, script, port, connections, args.duration, cpu))


def measure_harness(engine: LoadEngine, port: int, users: int, args: argparse.Namespace) -> Figures:
    """``users`` closed-loop harness users: warm-up, then ``WINDOWS`` windows spanning ``--duration``."""
    request = {
        "kind": "rest",
        "address": f"http://{HOST}:{port}",
        "path": "/",
        "body": BODY,
        "headers": {"Content-Type": "application/json"},
    }
    subject = Subject(Target("nginx", "rest"), "trivial", request, batch_size=1, source="nginx")
    window_s = args.duration / WINDOWS
    policy = WindowPolicy(warmup_s=args.warmup, window_s=window_s, min_windows=WINDOWS, max_windows=WINDOWS)
    try:
        result = measure(engine, subject, closed(users), policy, timeout_s=5, seed=0)
    except PointAborted as err:
        raise RuntimeError(f"harness point c={users} aborted: {err}") from err
    summary = result["summary"]
    extra = {
        "requests": summary["requests"],
        "failed": summary["failed"],
        "errors": summary["errors"],
        "windows": summary["windows"],
        "generator_busy_max": result["generator_busy_max"],
        "client_bound": result["client_bound"],
    }
    return Figures(summary["throughput_rps"]["value"], summary["latency_us"]["p50"]["value"], extra)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def versions(wrk: str, nginx: str) -> dict[str, str]:
    wrk_out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    nginx_out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    return {
        "wrk": (wrk_out.stdout or wrk_out.stderr).splitlines()[0].split(" Copyright")[0].removeprefix("wrk "),
        "nginx": (nginx_out.stderr or nginx_out.stdout).strip().removeprefix("nginx version: nginx/"),
        "locust": version("locust"),
        "python": sys.version.split()[0],
    }


def print_table(capacity: dict[str, Figures], latency: dict[str, Figures], args: argparse.Namespace) -> dict:
    """The comparison table; returns its figures."""
    cap_ratio = capacity["harness"].rps / capacity["wrk"].rps
    lat_ratio = latency["harness"].p50_us / latency["wrk"].p50_us
    rows = [
        (
            f"capacity, req/s (c={args.capacity_connections})",
            capacity["harness"].rps,
            capacity["wrk"].rps,
            cap_ratio,
        ),
        (
            f"p50 latency, us (c={args.latency_connections})",
            latency["harness"].p50_us,
            latency["wrk"].p50_us,
            lat_ratio,
        ),
    ]
    print(f"\n{'metric':<32} {'harness':>10} {'wrk':>10} {'harness/wrk':>12}")
    for name, harness, wrk, ratio in rows:
        print(f"{name:<32} {harness:>10.1f} {wrk:>10.1f} {ratio:>12.3f}")
    print(
        f"(also: harness p50 at c={args.capacity_connections} {capacity['harness'].p50_us:.1f} us vs wrk "
        f"{capacity['wrk'].p50_us:.1f} us; harness req/s at c={args.latency_connections} "
        f"{latency['harness'].rps:.1f} vs wrk {latency['wrk'].rps:.1f})"
    )
    return {"capacity_ratio": cap_ratio, "p50_ratio": lat_ratio}


def print_extras(capacity: dict[str, Figures], latency: dict[str, Figures]) -> None:
    for label, runs in (("capacity", capacity), ("latency", latency)):
        for tool, figures in runs.items():
            print(f"  {label} run, {tool}: {figures.extra}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds before each run (default 2)"
    )
    parser.add_argument("--capacity-connections", type=int, default=32, help="users/connections for capacity")
    parser.add_argument(
        "--latency-connections", type=int, default=4, help="users/connections for p50 latency"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.duration <= 0 or args.warmup < 0 or args.capacity_connections < 1 or args.latency_connections < 1:
        parser.error("--duration must be positive, --warmup non-negative, connection counts at least 1")
    return args


def run(args: argparse.Namespace, wrk: str, nginx: str) -> dict:
    """Start nginx, measure both generators at both connection counts, stop nginx."""
    pinning = choose_pinning()
    if pinning.generator is not None:
        pin_this_process(pinning.generator)
    info = {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "pinning": pinning.describe()}
    info |= {"versions": versions(wrk, nginx), "duration_s": args.duration, "warmup_s": args.warmup}
    print(f"CPU: {info['cpu_model']}, {info['cpus']} cores; pinning: {info['pinning']}")
    print("versions: " + "; ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print(
        f"each run: {args.warmup:g} s warm-up + {args.duration:g} s measured (harness: {WINDOWS} windows of "
        f"{args.duration / WINDOWS:g} s); both generators are closed-loop on one CPU: N connections/users, "
        "each waits for its answer before sending again; wrk -t1, harness LoadEngine(workers=0)"
    )
    with tempfile.TemporaryDirectory(prefix="harness-vs-wrk-") as tmpdir:
        tmp = Path(tmpdir)
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT)
        port = free_port()
        server = start_nginx(nginx, tmp, port, pinning.server)
        engine = LoadEngine(workers=0)
        started = time.monotonic()
        try:
            print(f"nginx PID {server.pid} on {HOST}:{port}; measuring ...", flush=True)
            capacity, latency = {}, {}
            for connections, store in (
                (args.capacity_connections, capacity),
                (args.latency_connections, latency),
            ):
                store["wrk"] = measure_wrk(wrk, script, port, connections, args, pinning.generator)
                store["harness"] = measure_harness(engine, port, connections, args)
        finally:
            engine.close()
            stop_process(server)
    ratios = print_table(capacity, latency, args)
    print_extras(capacity, latency)
    info["wall_s"] = round(time.monotonic() - started, 1)
    print(f"wall time of the measurements: {info['wall_s']} s")
    runs = {
        name: {tool: vars(figures) for tool, figures in store.items()}
        for name, store in (("capacity", capacity), ("latency", latency))
    }
    connections = {"capacity": args.capacity_connections, "latency": args.latency_connections}
    return info | {"connections": connections, "runs": runs, "ratios": ratios}


def main() -> int:
    args = parse_args()
    wrk, nginx = find_binary("wrk"), find_binary("nginx")
    if wrk is None or nginx is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    figures = run(args, wrk, nginx)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
