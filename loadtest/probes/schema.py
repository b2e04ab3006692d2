"""The typed, versioned ``probes.json``: what every probe measured, per server, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serveoff.errors import ServeoffError
from serveoff.report.files import write_atomically

SCHEMA = "serveoff.probes/1"
PROBES_FILE = "probes.json"
PROBES = ("cold_start", "bad_input", "overload", "model_update", "soak", "process_failure")


@dataclass
class Sample:
    """One slice of a timeline: seconds from the probe's start, answers, failures and latency."""

    t_s: float
    ok: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None
    phase: str = ""  # e.g. "baseline", "2x", "recovery", "after kill"
    note: str = ""  # e.g. the version serving by default then


@dataclass
class ProbeResult:
    """One probe on one server and model: measured figures, findings in words, and its timeline."""

    probe: str
    server: str
    model: str
    source: str  # the server and the version it reports
    test_double: bool  # a test double's figures settle no claim
    figures: dict[str, float | int | str | bool | None] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    series: list[Sample] = field(default_factory=list)
    cases: list[dict[str, str | int | bool | None]] = field(default_factory=list)  # bad input: one per case
    error: str | None = None  # why the probe could not finish (what it measured before is kept)

    @classmethod
    def from_json(cls, doc: dict) -> ProbeResult:
        return cls(**doc | {"series": [Sample(**s) for s in doc.get("series", [])]})


@dataclass
class ProbesFile:
    """Every probe of one `serveoff probe` run."""

    settings: dict[str, float | int | str]
    results: list[ProbeResult] = field(default_factory=list)
    schema: str = SCHEMA

    def of(self, probe: str) -> list[ProbeResult]:
        """The results of ``probe``, server by server."""
        return [r for r in self.results if r.probe == probe]

    def write(self, run_dir: Path) -> Path:
        """Write (again) ``run_dir/probes.json`` atomically: what was measured so far is never lost."""
        path = run_dir / PROBES_FILE
        text = json.dumps(asdict(self), indent=1)
        write_atomically(path, lambda tmp: tmp.write_text(text), "the probe results", "--out")
        return path


def read_probes(run_dir: Path) -> ProbesFile | None:
    """``run_dir/probes.json`` (``None`` when the run has none); one clear line for another schema."""
    path = run_dir / PROBES_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ServeoffError(f"{path} cannot be read ({err}); run `serveoff probe` again") from None
    if doc.get("schema") != SCHEMA:
        found = doc.get("schema")
        raise ServeoffError(f"{path} has schema {found!r}, not {SCHEMA}; run `serveoff probe` again")
    return ProbesFile(doc["settings"], [ProbeResult.from_json(r) for r in doc["results"]])
