"""A finished (or partial) run read back from ``results.json`` for the report, the claims and the gate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from serveoff.loadtest.results import read_results
from serveoff.loadtest.stats import Window
from serveoff.serving.base import is_test_double
from serveoff.serving.targets import SERVERS, server_class

BASELINE_TITLES = {"torch": "in-process PyTorch", "tf": "in-process TensorFlow"}
PROTOCOL_TITLES = {"rest": "REST", "grpc": "gRPC", "inprocess": ""}


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
    def points(self) -> list[dict]:
        """The points with answered requests (a point that failed before any answer has no figures)."""
        return [p for p in self.doc["points"] if p.get("summary") and p["summary"].get("requests")]

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(p["model"] for p in self.points))

    @property
    def targets(self) -> list[str]:
        """Targets in the plan's order, then any other measured one."""
        planned = self.manifest.get("plan", {}).get("targets", [])
        return list(dict.fromkeys([*planned, *(p["target"] for p in self.points)]))

    def windows(self, point: dict) -> list[Window]:
        """The point's measurement windows, histograms decoded."""
        return [Window.from_json(w) for w in point["windows"]]

    def test_doubles(self) -> set[str]:
        """Systems whose figures in this run came from one of serveoff's test doubles."""
        return {p["system"] for p in self.points if is_test_double(p["source"])}

    def genuine(self, system: str) -> bool:
        """Whether this run measured ``system`` itself (not a test double of it)."""
        return system not in self.test_doubles() and any(p["system"] == system for p in self.points)

    def source_of(self, system: str) -> str | None:
        """The ``source`` its points name, e.g. ``torchserve 0.12.0``."""
        return next((p["source"] for p in self.points if p["system"] == system), None)


def load_run(path: Path) -> Run:
    """The run in directory ``path`` (or a ``results.json``); one clear line when it cannot be read."""
    doc = read_results(path)
    return Run(path if path.is_dir() else path.parent, doc)


def point_key(point: dict) -> tuple[str, str, str, str]:
    """What identifies a point across runs: model, target, phase and load."""
    return point["model"], point["target"], point["phase"], json.dumps(point["load"], sort_keys=True)


def system_title(system: str) -> str:
    """How reports name a system: ``TorchServe``, ``TF Serving``, ``in-process PyTorch``."""
    if system in SERVERS:
        return server_class(system).title
    return BASELINE_TITLES.get(system, system)


def target_title(point: dict) -> str:
    """How reports name a point's target, e.g. ``TorchServe REST``.

    A test double's figures are never given the real server's name: they read ``test double of
    tfserving:rest``.
    """
    if is_test_double(point["source"]):
        return f"test double of {point['target']}"
    protocol = PROTOCOL_TITLES.get(point["protocol"], point["protocol"])
    return f"{system_title(point['system'])} {protocol}".strip()
