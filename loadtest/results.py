"""``results/<run-id>/results.json``: the contract between the load test, the report and the gate.

Schema ``serveoff.results/3`` (files of ``/2``, which lack ``manifest.systems``, and of ``/1``, which also
lack ``runtimes``, still read)::

    schema, run_id, status ("running" | "complete" | "partial"), error (null or the reason it stopped),
    started_at, finished_at,
    manifest: versions of servers, frameworks and libraries; CPU, cores, pinning; configs; git commit;
              the load plan, window policy and drift control; systems: how reports name each server
              and baseline (title) and what to know about its upkeep (status),
    points: one entry per (model, target, load point): statistics with confidence intervals, cost,
            server metrics, the flags stable, client_bound, overloaded (with why) and generator_bound,
            the merged and per-window latency histograms (HdrHistogram, base64),
    searches: per (model, target), the highest open-loop rate whose p99 stayed under the bound,
    serving_tax: per server load point, its latency minus the matching in-process baseline's,
    runtimes: per (model, in-process runtime), its load time, first call, warm call and compile time,
    warmups: per (model, target), the settling warm-up before its first point: slices, seconds, settled.

The file is rewritten atomically after every load point, so a run that stops early keeps what it measured.
It is strict JSON: a value that is not a finite number is written as null.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serveoff.errors import ServeoffError
from serveoff.loadtest.stats import Window

if TYPE_CHECKING:
    from serveoff.loadtest.startup import RuntimeStartup
    from serveoff.loadtest.warmup import Warmup

SCHEMA = "serveoff.results/3"
# /1: no runtimes[]; /2: no manifest.systems (the report then takes the titles from the registry)
READABLE = ("serveoff.results/1", "serveoff.results/2", SCHEMA)
RESULTS_FILE = "results.json"
TAX_PERCENTILES = ("p50", "p99")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ResultsFile:
    """One run's results, written after every change."""

    def __init__(self, run_dir: Path, run_id: str, manifest: dict) -> None:
        self.path = run_dir / RESULTS_FILE
        self.doc: dict = {
            "schema": SCHEMA,
            "run_id": run_id,
            "status": "running",
            "error": None,
            "started_at": now(),
            "finished_at": None,
            "manifest": manifest,
            "points": [],
            "searches": [],
            "serving_tax": [],
            "runtimes": [],
            "warmups": [],
        }
        self._points: list[PointResult] = []
        run_dir.mkdir(parents=True, exist_ok=True)
        self.write()

    @property
    def points(self) -> list[PointResult]:
        """The points recorded so far."""
        return list(self._points)

    def add_point(self, point: PointResult | dict) -> None:
        """Record a measured point (typed, or the entry ``measure`` builds) and the serving tax it adds."""
        typed = PointResult.of(point)
        self._points.append(typed)
        self.doc["points"].append(point if isinstance(point, dict) else typed.to_json())
        self.doc["serving_tax"] = serving_tax(self._points, self.doc["manifest"]["baseline_of"])
        self.write()

    def add_runtimes(self, startups: list[RuntimeStartup]) -> None:
        """Record what the in-process runtimes cost before they served."""
        self.doc["runtimes"] += [startup.to_json() for startup in startups]
        self.write()

    def add_warmup(self, warmup: Warmup) -> None:
        """Record one target's settling warm-up (its slices, seconds, settled or capped)."""
        self.doc["warmups"].append(warmup.to_json())
        self.write()

    def add_to_manifest(self, key: str, value: Any) -> None:
        """Record what the run learned about itself after it began (the harness calibration, say)."""
        self.doc["manifest"][key] = value
        self.write()

    def add_search(self, search: dict) -> None:
        self.doc["searches"].append(search)
        self.write()

    def finish(self, error: str | None = None) -> None:
        """Mark the run complete, or partial with the error that stopped it."""
        self.doc["status"] = "partial" if error else "complete"
        self.doc["error"] = error
        self.doc["finished_at"] = now()
        self.write()

    def write(self) -> None:
        """Write the file atomically: strict JSON, a value that is not a finite number written as null."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(finite(self.doc), f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity inside it replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def serving_tax(points: list[PointResult], baseline_of: dict[str, str]) -> list[dict]:
    """Each server point's latency minus its framework's plain in-process runtime (the artifact the server
    runs: ``torch:inprocess``, ``tf:inprocess``) at the same load."""
    baselines = {
        (p.model, p.system, p.load_key, p.phase): p
        for p in points
        if p.baseline and p.summary and p.target == f"{p.system}:inprocess"
    }
    taxes = []
    for point in points:
        framework = baseline_of.get(point.system)
        if point.baseline or not point.summary or framework is None:
            continue
        base = baselines.get((point.model, framework, point.load_key, point.phase))
        if base is None or base.summary is None:
            continue
        ours, theirs = point.summary, base.summary
        tax = {n: _difference(ours.latency(n).value, theirs.latency(n).value) for n in TAX_PERCENTILES}
        base_rps = theirs.throughput_rps.value
        taxes.append(
            {
                "model": point.model,
                "target": point.target,
                "baseline": base.target,
                "load": point.load,
                "label": point.label,
                "latency_us": tax,
                "throughput_ratio": ours.throughput_rps.value / base_rps if base_rps else None,
            }
        )
    return taxes


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --- the point result, as readers see it ------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% bootstrap interval (``low``/``high`` None: none was computed)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def from_json(cls, doc: dict | None) -> Estimate:
        """``{"value", "low", "high"}`` as stored; an absent figure reads as not measured."""
        doc = doc or {}
        return cls(doc.get("value"), doc.get("low"), doc.get("high"))

    def to_json(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


NOT_MEASURED = Estimate(None)


@dataclass(frozen=True)
class SendLag:
    """How late the open loop sent its requests, in µs (None: closed loop, or a file from before /2)."""

    p50: float | None = None
    p99: float | None = None
    max: float | None = None

    def to_json(self) -> dict:
        return {"p50": self.p50, "p99": self.p99, "max": self.max}


@dataclass(frozen=True)
class Summary:
    """A point's estimates over its windows: rates, latency percentiles (µs), errors, CPU cost, send lag."""

    requests: int  # answered successfully
    throughput_rps: Estimate = NOT_MEASURED
    inferences_per_s: Estimate = NOT_MEASURED
    error_rate: Estimate = NOT_MEASURED
    latency_us: dict[str, Estimate] = field(default_factory=dict)  # p50 ... p99.9 and max, as recorded
    cpu_s_per_1000: Estimate | None = None  # None: no server CPU was sampled (in-process baselines)
    windows: int = 0
    scheduled: int | None = None  # None: a file from before requests were counted as scheduled
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed requests by kind
    send_lag_us: SendLag = SendLag()

    def latency(self, name: str) -> Estimate:
        """The latency percentile ``name`` (``p50`` ... ``p99.9``, ``max``); not measured when absent."""
        return self.latency_us.get(name, NOT_MEASURED)

    @classmethod
    def from_json(cls, doc: dict) -> Summary:
        cpu = doc.get("cpu_s_per_1000")
        return cls(
            requests=doc.get("requests", 0),
            throughput_rps=Estimate.from_json(doc.get("throughput_rps")),
            inferences_per_s=Estimate.from_json(doc.get("inferences_per_s")),
            error_rate=Estimate.from_json(doc.get("error_rate")),
            latency_us={name: Estimate.from_json(s) for name, s in (doc.get("latency_us") or {}).items()},
            cpu_s_per_1000=Estimate.from_json(cpu) if isinstance(cpu, dict) else None,
            windows=doc.get("windows", 0),
            scheduled=doc.get("scheduled"),
            failed=doc.get("failed", 0),
            errors=dict(doc.get("errors") or {}),
            send_lag_us=SendLag(**(doc.get("send_lag_us") or {})),
        )

    def to_json(self) -> dict:
        return {
            "windows": self.windows,
            "scheduled": self.scheduled,
            "requests": self.requests,
            "failed": self.failed,
            "errors": self.errors,
            "error_rate": self.error_rate.to_json(),
            "throughput_rps": self.throughput_rps.to_json(),
            "inferences_per_s": self.inferences_per_s.to_json(),
            "latency_us": {name: stat.to_json() for name, stat in self.latency_us.items()},
            "send_lag_us": self.send_lag_us.to_json(),
            "cpu_s_per_1000": self.cpu_s_per_1000.to_json() if self.cpu_s_per_1000 else None,
        }


@dataclass(frozen=True)
class Flags:
    """Whether a point's figures can be trusted as measured: settled, served and sent on time."""

    stable: bool = False  # its last windows agreed within the tolerance
    client_bound: bool = False  # a generator event loop was at least 90% busy
    overloaded: bool = False  # over 1% of the scheduled requests failed or went unanswered
    overload: str | None = None  # why, when overloaded
    generator_bound: bool = False  # the open loop sent over 1% of its requests late (absent before /2)
    late_sends: int = 0
    queued_in_generator: int = 0
    send_lag_max_ms: float = 0.0

    @classmethod
    def from_json(cls, doc: dict) -> Flags:
        known = {name: doc[name] for name in FLAG_KEYS if doc.get(name) is not None}
        return cls(**known)

    def to_json(self) -> dict:
        return {name: getattr(self, name) for name in FLAG_KEYS}


FLAG_KEYS = tuple(f.name for f in fields(Flags))


@dataclass(frozen=True)
class PointResult:
    """One measured load point: what was measured, its flags and estimates, and its raw windows.

    ``from_json`` reads the entries of every readable schema (fields a version lacks take their defaults);
    ``to_json`` writes the current one. Keys this version does not know are kept in ``extra``.
    """

    model: str
    target: str
    system: str
    protocol: str
    baseline: bool
    source: str  # the server and its version, or the in-process framework (a test double says so)
    phase: str  # "sweep" | "search" | "calibration"
    load: dict  # the load point as the plan stores it (``LoadPoint.to_json``)
    label: str
    offered: float | None  # users (closed loop) or requests/s (open loop)
    flags: Flags = Flags()
    summary: Summary | None = None  # None: no window was measured
    batch_size: int = 1
    payload_bytes: int | None = None
    started_at: str | None = None
    generator_busy_max: float | None = None
    histogram: str | None = None  # merged latencies (µs), HdrHistogram base64
    send_lag_histogram: str | None = None
    windows: tuple[dict, ...] = ()  # as stored; ``decoded_windows`` decodes them
    error: str | None = None  # why the point stopped early
    peak_rss_mib: float | None = None
    server_metrics: dict | None = None  # {"delta": {...}} or {"error": "..."}
    extra: dict = field(default_factory=dict)
    # how the run's manifest names the point's system ("TorchServe"): filled in by the report when it reads
    # the run (``report.runs.Run``), not stored in the point
    system_title: str = ""

    @property
    def answered(self) -> bool:
        """Whether the point has figures: a summary of at least one answered request."""
        return bool(self.summary and self.summary.requests)

    @property
    def load_key(self) -> str:
        """The load point as one comparable string."""
        return json.dumps(self.load, sort_keys=True)

    @property
    def loop(self) -> str | None:
        return self.load.get("loop")

    def decoded_windows(self) -> list[Window]:
        """The measurement windows, histograms decoded."""
        return [Window.from_json(w) for w in self.windows]

    @classmethod
    def of(cls, point: PointResult | dict) -> PointResult:
        """``point`` itself, or read from its results entry."""
        return point if isinstance(point, PointResult) else cls.from_json(point)

    @classmethod
    def from_json(cls, doc: dict) -> PointResult:
        """A ``points[]`` entry of a results file of any readable schema."""
        summary = doc.get("summary")
        known = {name: doc[name] for name in POINT_KEYS if doc.get(name) is not None}
        extra = {k: v for k, v in doc.items() if k not in (*POINT_KEYS, *FLAG_KEYS, "summary", "windows")}
        return cls(
            **(ABSENT | known),
            flags=Flags.from_json(doc),
            summary=Summary.from_json(summary) if summary else None,
            windows=tuple(doc.get("windows") or ()),
            extra=extra,
        )

    def to_json(self) -> dict:
        """The entry as ``results.json`` stores it (flags beside the identity, as in every version)."""
        head = {name: getattr(self, name) for name in POINT_KEYS[:13]}
        return {
            **head,
            "generator_busy_max": self.generator_busy_max,
            **self.flags.to_json(),
            "summary": self.summary.to_json() if self.summary else None,
            "histogram": self.histogram,
            "send_lag_histogram": self.send_lag_histogram,
            "windows": list(self.windows),
            "error": self.error,
            "peak_rss_mib": self.peak_rss_mib,
            "server_metrics": self.server_metrics,
            **self.extra,
        }


# What an entry that lacks an identity field reads as (hand-written entries; a file's are checked first).
ABSENT = dict.fromkeys(("model", "target", "system", "protocol", "source", "phase", "label"), "") | {
    "baseline": False, "load": {}, "offered": None,
}  # fmt: skip
# The plain fields of a point, in the order results.json stores them (summary, flags and windows apart).
POINT_KEYS = (
    "model", "target", "system", "protocol", "baseline", "source", "phase", "load", "label", "offered",
    "batch_size", "payload_bytes", "started_at", "generator_busy_max", "histogram", "send_lag_histogram",
    "error", "peak_rss_mib", "server_metrics",
)  # fmt: skip


def read_results(run_dir: Path) -> dict:
    """A run's results; one clear line when the directory or file is missing or of another schema."""
    path = run_dir / RESULTS_FILE if run_dir.is_dir() else run_dir
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ServeoffError(
            f"{path} does not exist; pass a run directory written by `serveoff bench`"
        ) from None
    except (OSError, ValueError) as err:
        raise ServeoffError(f"cannot read {path}: {err}") from None
    if not isinstance(doc, dict) or doc.get("schema") not in READABLE:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise ServeoffError(f"{path} has schema {found!r}, not {SCHEMA!r}; re-run it with this serveoff")
    return doc
