"""The manifest of a run: everything needed to reproduce it or to judge whether two runs compare."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from serveoff import __version__
from serveoff.serving.resources import available_cpus

LIBRARIES = (
    "torch", "tensorflow", "keras", "tensorflow-serving-api", "torchserve", "locust", "hdrhistogram",
    "gevent", "geventhttpclient", "grpcio", "protobuf", "numpy", "scipy", "psutil",
)  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


def library_versions() -> dict[str, str]:
    """Versions of the Python and every library that shapes the measurements."""
    found = {"python": platform.python_version()}
    for package in LIBRARIES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> dict[str, object]:
    """The commit of the serveoff checkout that ran, and whether it had local changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    return {"commit": commit or "unknown", "dirty": dirty}


def machine() -> dict[str, object]:
    """The machine: CPU model and architecture, cores, the CPUs this process may use, memory, kernel."""
    import psutil

    return {
        "cpu_model": cpu_model(),
        "architecture": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpus_available": list(available_cpus()),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "system": platform.system(),
    }


def serveoff_info() -> dict[str, object]:
    return {"version": __version__, **git_commit()}
