"""A finished (or partial) run read back from ``results.json`` for the report, the claims and the gate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

from serveoff.errors import ServeoffError
from serveoff.loadtest.histograms import PERCENTILES, decode
from serveoff.loadtest.results import RESULTS_FILE, PointResult, read_results
from serveoff.serving.base import is_test_double

PROTOCOL_TITLES = {
    "rest": "REST", "grpc": "gRPC", "v1": "V1 REST",
    "inprocess": "", "compiled": "torch.compile", "xla": "XLA",
}  # fmt: skip


@dataclass
class Run:
    """One run: its results document and where it was read from."""

    path: Path  # the run directory
    doc: dict

    @property
    def run_id(self) -> str:
        return self.doc["run_id"]

    @property
    def manifest(self) -> dict:
        return self.doc["manifest"]

    @cached_property
    def systems(self) -> dict[str, dict]:
        """Per system, its ``title`` and ``status`` as the manifest recorded them (files of schema 2 and
        older did not: for them, the titles and upkeep notes of this serveoff's registry)."""
        recorded = self.manifest.get("systems")
        return recorded if isinstance(recorded, dict) else _registry_systems()

    def system_title(self, system: str) -> str:
        """How reports name a system: ``TorchServe``, ``TF Serving``, ``in-process PyTorch``."""
        return (self.systems.get(system) or {}).get("title") or system

    def status(self, system: str) -> str | None:
        """What a user choosing ``system`` should know about its upkeep, as the manifest recorded it."""
        return (self.systems.get(system) or {}).get("status")

    @cached_property
    def all_points(self) -> list[PointResult]:
        """Every point the results list, answered or not, each with its system's title."""
        points = (PointResult.from_json(p) for p in self.doc["points"])
        return [replace(p, system_title=self.system_title(p.system)) for p in points]

    @cached_property
    def points(self) -> list[PointResult]:
        """The points with answered requests (a point that failed before any answer has no figures)."""
        return [p for p in self.all_points if p.answered]

    @property
    def unanswered(self) -> list[PointResult]:
        """The points the results list without figures: nothing was answered, or the point was cut short."""
        return [p for p in self.all_points if not p.answered]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(p.model for p in self.points))

    @property
    def targets(self) -> list[str]:
        """Targets in the plan's order, then any other measured one."""
        planned = self.manifest.get("plan", {}).get("targets", [])
        return list(dict.fromkeys([*planned, *(p.target for p in self.points)]))

    def test_doubles(self) -> set[str]:
        """Systems whose figures in this run came from one of serveoff's test doubles."""
        return {p.system for p in self.points if is_test_double(p.source)}

    def genuine(self, system: str) -> bool:
        """Whether this run measured ``system`` itself (not a test double of it)."""
        return system not in self.test_doubles() and any(p.system == system for p in self.points)

    def source_of(self, system: str) -> str | None:
        """The ``source`` its points name, e.g. ``torchserve 0.12.0``."""
        return next((p.source for p in self.points if p.system == system), None)


def load_run(path: Path) -> Run:
    """The run in directory ``path`` (or a ``results.json``); one clear line when it cannot be read.

    Every field the report and the gate read is checked here, so a malformed file is one line naming the
    file and the field, never a traceback.
    """
    doc = read_results(path)
    _Check(path / RESULTS_FILE if path.is_dir() else path).document(doc)
    return Run(path if path.is_dir() else path.parent, doc)


STATUSES = ("running", "complete", "partial")
# The kinds a field may be, as the errors name them.
TEXT, NUMBER, COUNT, FLAG = "a string", "a number", "a whole number of 0 or more", "true or false"
MAPPING, LIST = "a mapping", "a list"
POINT_TEXT = ("model", "target", "system", "protocol", "phase", "label", "source")
RATES = ("throughput_rps", "error_rate", "inferences_per_s")
MANIFEST_MAPPINGS = ("plan", "fairness", "machine", "models", "windows", "generator", "serveoff", "systems")


class _Check:
    """Validates a results document field by field; the first problem is one clear line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ServeoffError(
            f"results file {self.path} is malformed: {field} {problem}; "
            "re-measure the run with `serveoff bench`, or restore the file as it was written"
        )

    def get(self, doc: dict, key: str, field: str, kind: str, optional: bool = False) -> Any:
        """``doc[key]`` if it is of ``kind`` (None when ``optional`` and absent or null)."""
        where = f"{field}.{key}" if field else key
        if key not in doc or doc[key] is None:
            if optional:
                return None
            self.fail(where, "is missing" if key not in doc else f"is null; it must be {kind}")
        value = doc[key]
        if not _is(value, kind):
            self.fail(where, f"must be {kind}, not {_kind_of(value)}")
        return value

    def document(self, doc: dict) -> None:
        self.get(doc, "run_id", "", TEXT)
        if doc.get("status") not in STATUSES:
            self.fail("status", f"is {doc.get('status')!r}; it must be one of {', '.join(STATUSES)}")
        self.get(doc, "error", "", TEXT, optional=True)
        self.manifest(self.get(doc, "manifest", "", MAPPING))
        for index, point in enumerate(self.get(doc, "points", "", LIST)):
            self.point(point, f"points[{index}]")
        for index, search in enumerate(self.get(doc, "searches", "", LIST, optional=True) or []):
            self.search(search, f"searches[{index}]")
        for index, tax in enumerate(self.get(doc, "serving_tax", "", LIST, optional=True) or []):
            self.tax(tax, f"serving_tax[{index}]")

    def manifest(self, manifest: dict) -> None:
        for key in MANIFEST_MAPPINGS:
            self.get(manifest, key, "manifest", MAPPING, optional=True)
        plan = manifest.get("plan") or {}
        for key in ("models", "targets", "points"):
            self.get(plan, key, "manifest.plan", LIST, optional=True)
        models = manifest.get("models") or {}
        for name in models:
            model = self.get(models, name, "manifest.models", MAPPING)
            self.get(model, "content_hash", f"manifest.models.{name}", TEXT)
        systems = manifest.get("systems") or {}
        for name in systems:
            system = self.get(systems, name, "manifest.systems", MAPPING)
            self.get(system, "title", f"manifest.systems.{name}", TEXT)
            self.get(system, "status", f"manifest.systems.{name}", TEXT, optional=True)
        fairness = manifest.get("fairness") or {}
        config = self.get(fairness, "config", "manifest.fairness", MAPPING, optional=True) or {}
        self.get(config, "max_batch_size", "manifest.fairness.config", COUNT, optional=True)

    def point(self, point: Any, field: str) -> None:
        if not isinstance(point, dict):
            self.fail(field, f"must be a mapping, not {_kind_of(point)}")
        for key in POINT_TEXT:
            self.get(point, key, field, TEXT)
        self.get(self.get(point, "load", field, MAPPING), "loop", f"{field}.load", TEXT)
        self.get(point, "offered", field, NUMBER)
        for key in ("stable", "client_bound", "overloaded", "baseline"):
            self.get(point, key, field, FLAG, optional=True)
        self.get(point, "peak_rss_mib", field, NUMBER, optional=True)
        for key in ("error", "overload"):
            self.get(point, key, field, TEXT, optional=True)
        self.histogram(point, field, optional=True)
        windows = self.get(point, "windows", field, LIST, optional=True) or []
        for index, window in enumerate(windows):
            self.window(window, f"{field}.windows[{index}]")
        summary = self.get(point, "summary", field, MAPPING, optional=True)
        if summary is not None and self.get(summary, "requests", f"{field}.summary", COUNT):
            self.summary(summary, f"{field}.summary")
            if not windows:
                self.fail(f"{field}.windows", "is empty, but the summary counts answered requests")

    def summary(self, summary: dict, field: str) -> None:
        for key in RATES:
            self.stat(self.get(summary, key, field, MAPPING), f"{field}.{key}")
        latency = self.get(summary, "latency_us", field, MAPPING)
        for name in PERCENTILES:
            self.stat(self.get(latency, name, f"{field}.latency_us", MAPPING), f"{field}.latency_us.{name}")
        cost = self.get(summary, "cpu_s_per_1000", field, MAPPING, optional=True)
        if cost is not None:
            self.stat(cost, f"{field}.cpu_s_per_1000")

    def stat(self, stat: dict, field: str) -> None:
        for key in ("value", "low", "high"):
            self.get(stat, key, field, NUMBER, optional=True)

    def window(self, window: Any, field: str) -> None:
        if not isinstance(window, dict):
            self.fail(field, f"must be a mapping, not {_kind_of(window)}")
        for key in ("index", "requests", "unfinished", "generators"):
            self.get(window, key, field, COUNT)
        for key in ("duration_s", "generator_busy"):
            self.get(window, key, field, NUMBER)
        if not window["duration_s"] > 0:
            self.fail(f"{field}.duration_s", f"is {window['duration_s']}; it must be above 0")
        self.get(window, "server_cpu_s", field, NUMBER, optional=True)
        errors = self.get(window, "errors", field, MAPPING)
        for kind in errors:
            self.get(errors, kind, f"{field}.errors", COUNT)
        self.histogram(window, field)

    def histogram(self, doc: dict, field: str, optional: bool = False) -> None:
        text = self.get(doc, "histogram", field, TEXT, optional=optional)
        try:
            decode(text or "")
        except Exception as err:  # the HdrHistogram codec raises several kinds on garbage
            self.fail(f"{field}.histogram", f"is not an HdrHistogram in its base64 encoding ({err})")

    def search(self, search: Any, field: str) -> None:
        if not isinstance(search, dict):
            self.fail(field, f"must be a mapping, not {_kind_of(search)}")
        for key in ("model", "target"):
            self.get(search, key, field, TEXT)
        for key in ("max_rate", "p99_bound_ms"):
            self.get(search, key, field, NUMBER, optional=True)

    def tax(self, tax: Any, field: str) -> None:
        if not isinstance(tax, dict):
            self.fail(field, f"must be a mapping, not {_kind_of(tax)}")
        for key in ("model", "target", "baseline", "label"):
            self.get(tax, key, field, TEXT)
        self.get(tax, "load", field, MAPPING)
        latency = self.get(tax, "latency_us", field, MAPPING)
        for name in ("p50", "p99"):
            self.get(latency, name, f"{field}.latency_us", NUMBER, optional=True)


def _is(value: Any, kind: str) -> bool:
    if kind in (NUMBER, COUNT) and isinstance(value, bool):
        return False
    if kind == COUNT:
        return isinstance(value, int) and value >= 0
    types = {TEXT: str, NUMBER: int | float, FLAG: bool, MAPPING: dict, LIST: list}[kind]
    return isinstance(value, types)


def _kind_of(value: Any) -> str:
    """How an error names what was found: ``a string ('x')``, ``-3``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    names = {str: "a string", bool: "a boolean", dict: "a mapping", list: "a list"}
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{names.get(type(value), type(value).__name__)} ({shown})"


def point_key(point: PointResult) -> tuple[str, str, str, str]:
    """What identifies a point across runs: model, target, phase and load."""
    return point.model, point.target, point.phase, point.load_key


def _registry_systems() -> dict[str, dict]:
    """The titles and upkeep notes of this serveoff's servers and baselines, for results files that did not
    record them (schema 2 and older)."""
    from serveoff.serving.runtimes import SYSTEM_TITLES
    from serveoff.serving.targets import SERVERS, server_class

    servers = {cls.name: {"title": cls.title, "status": cls.status} for cls in map(server_class, SERVERS)}
    return servers | {name: {"title": title, "status": None} for name, title in SYSTEM_TITLES.items()}


def target_title(point: PointResult) -> str:
    """How reports name a point's target, e.g. ``TorchServe REST``.

    A test double's figures are never given the real server's name: they read ``test double of
    tfserving:rest``.
    """
    if is_test_double(point.source):
        return f"test double of {point.target}"
    protocol = PROTOCOL_TITLES.get(point.protocol, point.protocol)
    return f"{point.system_title or point.system} {protocol}".strip()
