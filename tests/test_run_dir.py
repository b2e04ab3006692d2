"""Where a run's results go: a fresh directory per run, never an existing one, one clear line otherwise."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serveoff.app import new_run_dir
from serveoff.errors import ServeoffError
from tests.commands import serveoff


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    for moment in (now, now + timedelta(seconds=1)):  # the id of this second (and the next) is taken
        (tmp_path / moment.strftime("%Y%m%d-%H%M%S")).mkdir()
    first = new_run_dir(tmp_path, None)
    assert first.name.endswith("-2") and first.is_dir()

    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(new_run_dir(tmp_path, None))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 8 and first not in made  # none shares another's directory


def test_an_explicit_run_id_is_never_reused(tmp_path: Path) -> None:
    assert new_run_dir(tmp_path, "base") == (tmp_path / "base").resolve()
    with pytest.raises(ServeoffError, match="already exists; choose another --run-id"):
        new_run_dir(tmp_path, "base")


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("{tmp}/file", "--out {tmp}/file is a file, not a directory; choose another --out"),
        ("{tmp}/file/below", "cannot create a run directory in {tmp}/file/below: Not a directory"),
        ("/sys/serveoff-results", "cannot create a run directory in /sys/serveoff-results"),  # not writable
    ],
)
def test_an_out_that_cannot_hold_runs_is_one_line(out, message, tmp_path, env) -> None:
    (tmp_path / "file").write_text("a file, not a directory")
    out, message = out.replace("{tmp}", str(tmp_path)), message.replace("{tmp}", str(tmp_path))
    for command in (["bench", "--target", "torch:inprocess"], ["run", "--server", "torchserve"]):
        args = [*command, "--out", out, "--artifacts", str(tmp_path / "none")]
        done = serveoff(args, env, timeout=120, cwd=tmp_path)  # no servers.json of serveoff up there
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
        assert lines[0].startswith("serveoff: error: ") and message in lines[0]
        assert "choose another --out" in lines[0]
