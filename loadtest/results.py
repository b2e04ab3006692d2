"""``results/<run-id>/results.json``: the contract between the load test, the report and the gate.

Schema ``serveoff.results/2`` (files of ``serveoff.results/1``, which lack ``runtimes``, still read)::

    schema, run_id, status ("running" | "complete" | "partial"), error (null or the reason it stopped),
    started_at, finished_at,
    manifest: versions of servers, frameworks and libraries; CPU, cores, pinning; configs; git commit;
              the load plan, window policy and drift control,
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serveoff.errors import ServeoffError

if TYPE_CHECKING:
    from serveoff.loadtest.startup import RuntimeStartup
    from serveoff.loadtest.warmup import Warmup

SCHEMA = "serveoff.results/2"
READABLE = ("serveoff.results/1", SCHEMA)  # /1: no runtimes[]
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
        run_dir.mkdir(parents=True, exist_ok=True)
        self.write()

    def add_point(self, point: dict) -> None:
        self.doc["points"].append(point)
        self.doc["serving_tax"] = serving_tax(self.doc["points"], self.doc["manifest"]["baseline_of"])
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


def serving_tax(points: list[dict], baseline_of: dict[str, str]) -> list[dict]:
    """Each server point's latency minus its framework's plain in-process runtime (the artifact the server
    runs: ``torch:inprocess``, ``tf:inprocess``) at the same load."""
    baselines = {
        (p["model"], p["system"], json.dumps(p["load"], sort_keys=True), p["phase"]): p
        for p in points
        if p["baseline"] and p.get("summary") and p["target"] == f"{p['system']}:inprocess"
    }
    taxes = []
    for point in points:
        framework = baseline_of.get(point["system"])
        if point["baseline"] or not point.get("summary") or framework is None:
            continue
        key = (point["model"], framework, json.dumps(point["load"], sort_keys=True), point["phase"])
        base = baselines.get(key)
        if base is None:
            continue
        server_lat, base_lat = point["summary"]["latency_us"], base["summary"]["latency_us"]
        tax = {
            name: _difference(server_lat[name]["value"], base_lat[name]["value"]) for name in TAX_PERCENTILES
        }
        base_rps = base["summary"]["throughput_rps"]["value"]
        taxes.append(
            {
                "model": point["model"],
                "target": point["target"],
                "baseline": base["target"],
                "load": point["load"],
                "label": point["label"],
                "latency_us": tax,
                "throughput_ratio": point["summary"]["throughput_rps"]["value"] / base_rps
                if base_rps
                else None,
            }
        )
    return taxes


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


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
