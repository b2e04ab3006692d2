"""Proof that two artifacts compute the same function: max abs difference and argmax agreement."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from serveoff.errors import ServeoffError

DEFAULT_ATOL = 1e-4
MIN_SAMPLES = 256


class Runner(Protocol):
    """Anything that maps a numpy batch to a numpy batch of outputs."""

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ParityReport:
    """The figures written to ``parity.json``."""

    samples: int
    max_abs_diff: float
    argmax_agreement: float
    atol: float
    output_shape: list[int]

    @property
    def passed(self) -> bool:
        """Within tolerance and every argmax the same."""
        return self.max_abs_diff <= self.atol and self.argmax_agreement == 1.0

    def to_json(self) -> dict:
        """Plain data, with the verdict."""
        return asdict(self) | {"passed": self.passed}

    def summary(self) -> str:
        """One line with the figures."""
        return (
            f"max abs diff {self.max_abs_diff:.3g} (tolerance {self.atol:g}), "
            f"argmax agreement {self.argmax_agreement:.2%} over {self.samples} inputs"
        )


def compare(
    reference: Runner, candidate: Runner, inputs: np.ndarray, atol: float, batch_size: int = 32
) -> ParityReport:
    """Run both runners over ``inputs`` in batches and compare their outputs."""
    ref, cand = outputs(reference, inputs, batch_size), outputs(candidate, inputs, batch_size)
    return compare_outputs(ref, cand, atol)


def outputs(runner: Runner, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``runner``'s outputs for ``inputs``, computed in batches of ``batch_size``."""
    batches = range(0, len(inputs), batch_size)
    return np.concatenate([runner.predict(inputs[i : i + batch_size]) for i in batches])


def compare_outputs(ref: np.ndarray, cand: np.ndarray, atol: float) -> ParityReport:
    """The parity figures of a candidate's outputs against the reference's, for the same inputs."""
    if ref.shape != cand.shape:
        raise ServeoffError(
            f"the two artifacts disagree on the output shape: {list(ref.shape)} vs {list(cand.shape)}; "
            "they must be the same model"
        )
    diff = float(np.max(np.abs(ref.astype(np.float64) - cand.astype(np.float64)))) if ref.size else 0.0
    flat_ref, flat_cand = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    agreement = float(np.mean(np.argmax(flat_ref, axis=1) == np.argmax(flat_cand, axis=1)))
    return ParityReport(len(ref), diff, agreement, atol, list(ref.shape))
