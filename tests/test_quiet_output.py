"""Quiet output: `serveoff build` and `serveoff run` print serveoff's lines only.

TensorFlow's C++ libraries (absl, oneDNN, CUDA), its Python logger and locust's logger write into the log
file that the output names once. The commands run in subprocesses, as users run them, in a fresh working
folder, so the log folder (``.serveoff/logs``) is theirs alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from serveoff.serving import runtimes
from tests.commands import serveoff

# What the libraries print: absl's C++ prefix (I0000 00:00:...), its pre-init notice, oneDNN, CUDA, Python
# logging's default format (locust's "WARNING:root:CPU usage above 90%!"), TensorFlow's and locust's names.
LIBRARY_LINE = re.compile(
    r"^[IWEF]\d{4} |absl|onednn|cuda|cuinit|^(?:debug|info|warning|error|critical):|cpu usage above|"
    r"tensorflow[/:.]|locust",
    re.IGNORECASE,
)
NAMED = re.compile(r"^serveoff: the libraries' own messages \(TensorFlow, absl, locust\) go to (\S+)$")


def library_log(output: str, cwd: Path) -> Path:
    """The one log file the output names; no other line of the output may come from a library."""
    lines = output.splitlines()
    named = [m[1] for m in map(NAMED.match, lines) if m]
    assert len(named) == 1, output[-3000:]
    leaked = [line for line in lines if LIBRARY_LINE.search(line) and not NAMED.match(line)]
    assert leaked == [], leaked
    return cwd / named[0]


def test_build_prints_serveoffs_lines_only(artifacts_dir, tmp_path, env) -> None:
    done = serveoff(["build", "--model", "digits-mlp", "--out", str(artifacts_dir)], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [f"digits-mlp: {artifacts_dir / 'digits-mlp'}"]
    log = library_log(done.stdout + done.stderr, tmp_path)
    assert log.parent == tmp_path / ".serveoff" / "logs" and log.name.startswith("build-")
    text = log.read_text()
    assert "absl::InitializeLog" in text or "oneDNN" in text  # TensorFlow was imported, into the log


def test_run_prints_serveoffs_lines_only(artifacts_dir, tmp_path, env) -> None:
    args = ["run", "--cpus", "0", "--model", "digits-mlp", "--server", "torchserve", "--workers", "1"]
    args += ["--artifacts", str(artifacts_dir), "--out", str(tmp_path / "results"), "--run-id", "quiet"]
    args += ["--concurrency", "1", "--warmup", "0.5", "--window", "0.5", "--min-windows", "3"]
    done = serveoff([*args, "--max-windows", "3", "--settle-cap", "0"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "results" / "quiet" / "results.json").is_file()
    lines = done.stderr.splitlines()
    points = [line for line in lines if re.match(r"digits-mlp \S+ +c=1 ", line)]
    assert len(points) == 2 + len(runtimes.names()), done.stderr[-3000:]  # REST, gRPC and every runtime
    log = library_log(done.stdout + done.stderr, tmp_path)
    assert log.name.startswith("run-") and "absl::InitializeLog" in log.read_text()
    assert (tmp_path / "results" / "quiet" / "locust-worker-0.log").is_file()  # the worker's own output
