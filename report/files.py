"""Writing the report's and the gate's output files atomically, with one clear line when that fails."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from serveoff.errors import ServeoffError


def write_atomically(path: Path, write: Callable[[Path], None], what: str, option: str) -> None:
    """``write`` a temporary file beside ``path``, then move it into place.

    ``what`` names the file (``the report``) and ``option`` the flag that chooses its path (``--out``), for
    the one line that says why it cannot be written: a read-only directory, a parent that is a file, a
    path that is a directory.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "it is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ServeoffError(
            f"cannot write {what} to {path}: {_why(path, err)}; pass {option} a file in a writable directory"
        ) from None


def _why(path: Path, err: OSError) -> str:
    """The reason in words; a parent that is a file is named, as the system's reason does not."""
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is a file, not a directory"
    return err.strerror or str(err)
