"""Run the `serveoff` command in-process, as its console script does."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from serveoff.cli import main


@dataclass
class CliResult:
    """Exit code and captured output of one command."""

    code: int
    stdout: str
    stderr: str


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> CliResult:
    """Invoke ``serveoff ARGS`` and return its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["serveoff", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return CliResult(code, out, err)
