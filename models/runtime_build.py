"""The build's loop over the in-process runtimes: export each one's artifact and parity-check it.

Every runtime is compared with the TorchScript model (the reference of ``torch:inprocess``) on the same
held-out inputs, like the SavedModel; one out of tolerance fails the build. A runtime whose libraries are
missing, or that cannot be built from this build's artifacts (your own model has no PyTorch module to
compile), is recorded as unavailable with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from serveoff.errors import ParityError, ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.parity import ParityReport, compare_outputs, outputs
from serveoff.models.runners import TorchScriptRunner
from serveoff.serving import runtimes
from serveoff.serving.resources import server_config

REFERENCE = "torch:inprocess"
EXAMPLE_ROWS = 8  # the batch the exporters trace (a dynamic batch dimension is kept)


@dataclass
class RuntimeBuild:
    """What the build made of each runtime: parity figures, or why it is unavailable; for parity.json
    and the manifest."""

    parity: dict[str, ParityReport] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # export and parity check, per runtime

    def parity_json(self) -> dict:
        """parity.json's ``runtimes`` section: each runtime's figures, or ``{"unavailable": why}``."""
        section = {name: report.to_json() for name, report in self.parity.items()}
        section |= {name: {"unavailable": why} for name, why in self.unavailable.items()}
        return {name: section[name] for name in runtimes.names() if name in section}

    def manifest_json(self, layout: ArtifactLayout) -> dict:
        """The manifest's ``runtimes`` section: each built runtime's artifact and library versions."""
        section: dict[str, dict] = {}
        for name in runtimes.names():
            if name in self.parity:
                artifact = runtimes.get(name).artifact(layout)
                section[name] = {
                    "artifact": str(artifact.relative_to(layout.root)) if artifact else None,
                    "versions": runtimes.versions(name),
                    "build_s": round(self.seconds[name], 2),
                }
            elif name in self.unavailable:
                section[name] = {"unavailable": self.unavailable[name]}
        return section

    def files(self, layout: ArtifactLayout) -> dict[str, str]:
        """The artifacts of the built runtimes, for the manifest's ``files``."""
        found = {}
        for name in self.parity:
            artifact = runtimes.get(name).artifact(layout)
            if artifact is not None:
                found[name] = str(artifact.relative_to(layout.root))
        return found


def build_runtimes(
    name: str,
    layout: ArtifactLayout,
    module: torch.nn.Module | None,
    inputs: np.ndarray,
    atol: float,
    log: Callable[[str], None],
) -> RuntimeBuild:
    """Export and parity-check every registered runtime for model ``name``; ``ParityError`` when one is
    out of tolerance, ``ServeoffError`` when an export breaks."""
    built = RuntimeBuild()
    reference = outputs(TorchScriptRunner(layout.torchscript), inputs)
    example = build_inputs(layout, module, inputs)
    config = server_config("out-of-the-box")  # no thread counts: the build process keeps its own
    for target in runtimes.names():
        if not runtimes.installed(target):
            built.unavailable[target] = "not installed here"
            continue
        started = time.perf_counter()
        runtime = runtimes.get(target)
        try:
            runtime.export(example)
        except runtimes.Unavailable as why:
            built.unavailable[target] = str(why)
            log(f"{name}: no {target}: {why}")
            continue
        except ServeoffError:
            raise
        except Exception as err:  # an exporter's own error types: one line, the build stops
            raise ServeoffError(
                f"{name}: the {target} export failed: {runtimes.first_line(err)}"
            ) from None
        report = compare_outputs(reference, outputs(runtime.load(layout, config), inputs), atol)
        if not report.passed:
            raise ParityError(
                f"{name}: {target} parity failed: {report.summary()}; its {runtime.title} artifact computes "
                "another function than the TorchScript model"
            )
        built.parity[target] = report
        built.seconds[target] = time.perf_counter() - started
    log(f"{name}: runtimes within tolerance: {', '.join(built.parity)}")
    return built


def build_inputs(
    layout: ArtifactLayout, module: torch.nn.Module | None, inputs: np.ndarray
) -> runtimes.BuildInputs:
    """What the exporters get: the artifacts, the eager module (or ``None``) and a few held-out rows."""
    return runtimes.BuildInputs(layout, module, np.ascontiguousarray(inputs[:EXAMPLE_ROWS]))
