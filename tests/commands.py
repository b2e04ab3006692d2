"""Running the `serveoff` command in a subprocess, as users do, and finding what it left running."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

FAKES = Path(__file__).parent / "fakes"
SERVEOFF = Path(sys.executable).parent / "serveoff"
# Short windows: the tests check behaviour, not performance. QUICK also skips the settling warm-up and the
# harness calibration (tests/test_warmup.py and tests/test_calibrate.py check those); QUICK_SETTLED keeps
# both, briefly, for the runs whose report must show them.
WINDOWS = ["--warmup", "0.5", "--window", "0.5", "--min-windows", "2", "--max-windows", "3"]
QUICK = [*WINDOWS, "--settle-cap", "0", "--no-calibrate"]
QUICK_SETTLED = [*WINDOWS, "--settle-slice", "0.5", "--settle-floor", "1", "--settle-cap", "3"]


def serveoff(
    args: list[str],
    env: dict[str, str],
    prefix: list[str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """``serveoff ARGS`` in a subprocess (locust monkey-patches the process it runs in), after ``prefix``."""
    return subprocess.run(
        [*(prefix or []), str(SERVEOFF), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def leftovers(marker: str) -> list[str]:
    """Live processes started by these tests' commands (they inherit the marker), after a moment."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for proc in psutil.process_iter():
            try:
                if (
                    proc.environ().get("SERVEOFF_TEST_MARK") == marker
                    and proc.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(f"{proc.pid} {' '.join(proc.cmdline())[:150]}")
            except psutil.Error:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
