"""The probe durations as one option group of `serveoff probe` (see ``serveoff.options.grouped``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serveoff.errors import ServeoffError
from serveoff.loadtest.probes.schema import PROBES

if TYPE_CHECKING:  # the context imports locust, which must come after gevent's monkey-patching
    from serveoff.loadtest.probes.context import ProbeSettings

LONGEST_S = 3600.0


@dataclass(frozen=True)
class ProbeOptions:
    """How long the timed probes run; the defaults take a few minutes per server on 2 CPUs."""

    overload_s: Annotated[float, typer.Option(help="Seconds at each overload level (2x, 5x).")] = 6.0
    soak_s: Annotated[float, typer.Option(help="Seconds of the soak (lengthen it for a real soak).")] = 30.0
    failure_s: Annotated[float, typer.Option(help="Seconds of load through the process kill.")] = 10.0
    update_s: Annotated[float, typer.Option(help="Seconds of load through the version rollout.")] = 10.0
    probe: Annotated[
        list[str] | None,
        typer.Option(help="A probe to run (repeatable; default: all six). cold_start runs always: every "
                     "server is launched fresh.", metavar="PROBE"),
    ] = None
    beside: Annotated[
        Path | None,
        typer.Option(help="A run directory of `serveoff run`: probes.json goes beside its results.json and "
                     "its report gains the Production readiness section (default: a new run directory)."),
    ] = None

    def settings(self) -> ProbeSettings:
        """The checked settings; one clear line for a duration out of range."""
        for flag, value in (("--overload-s", self.overload_s), ("--soak-s", self.soak_s),
                            ("--failure-s", self.failure_s), ("--update-s", self.update_s)):  # fmt: skip
            if not 1 <= value <= LONGEST_S:  # NaN fails this too
                raise ServeoffError(f"{flag} {value:g} is out of range; give from 1 to {LONGEST_S:g} seconds")
        unknown = [name for name in self.probe or [] if name not in PROBES]
        if unknown:
            raise ServeoffError(f"--probe {unknown[0]} is not a probe; name one of {', '.join(PROBES)}")
        if self.beside is not None and not (self.beside / "results.json").is_file():
            raise ServeoffError(f"--beside {self.beside} is not a run directory (it has no results.json); "
                                "name one that `serveoff run` or `serveoff bench` wrote")  # fmt: skip
        from serveoff.loadtest.probes.context import ProbeSettings

        chosen = tuple(name for name in PROBES if name in (self.probe or PROBES))
        return ProbeSettings(overload_s=self.overload_s, recovery_s=self.overload_s, soak_s=self.soak_s,
                             failure_s=self.failure_s, update_s=self.update_s, probes=chosen)  # fmt: skip
