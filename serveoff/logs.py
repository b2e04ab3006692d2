"""Quiet output: the libraries' own messages go to one log file; the terminal shows serveoff's lines.

TensorFlow's C++ libraries print to stderr while they load (absl's "All log messages before
absl::InitializeLog() ...", oneDNN's notice, "Could not find cuda drivers") and when CUDA is first probed;
its Python side, absl, locust ("CPU usage above 90%!") and Python's warnings use ``logging``.
``quiet_libraries`` sends all of that to one file, ``.serveoff/logs/<command>-<time>.log``:

- The first ``import tensorflow``, wherever it happens, runs with file descriptor 2 on the log file and
  with ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only; unless it is set already), which TensorFlow reads then;
  its device probe (CUDA's ``cuInit``) runs there too. Nothing of serveoff prints meanwhile: the import
  blocks the process, gevent's greenlets included. The variable is restored afterwards, so the servers
  serveoff starts keep their own log levels.
- The ``logging`` root and Python's warnings go to the file. Records of serveoff's own loggers at WARNING
  and above still reach the terminal.

The file is made on the first message, and its path is said once, then.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

LOG_DIR = Path(".serveoff/logs")
QUIET_IMPORTS = ("tensorflow",)  # loading them prints C++ log lines to stderr
TF_LOG_LEVEL = ("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log: errors only
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Say = Callable[[str], None]


class LibraryLog:
    """The log file of one command: made, and named to the user, when the first message comes."""

    def __init__(self, path: Path, say: Say) -> None:
        self.path = path
        self.say = say
        self.opened = False

    def ensure(self) -> Path:
        """The file's path, its folder made (in the temp folder when the working folder is read-only)."""
        if not self.opened:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                self.path = Path(tempfile.gettempdir()) / "serveoff-logs" / self.path.name
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.opened = True
            self.say(f"serveoff: the libraries' own messages (TensorFlow, absl, locust) go to {self.path}")
        return self.path

    @contextlib.contextmanager
    def holding_stderr(self) -> Iterator[None]:
        """File descriptor 2, where C++ libraries write, on the log file for the duration."""
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        try:
            with open(self.ensure(), "ab") as log:
                os.dup2(log.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _FileHandler(logging.FileHandler):
    """A file handler that makes (and announces) the log file on its first record."""

    def __init__(self, log: LibraryLog) -> None:
        super().__init__(log.path, encoding="utf-8", delay=True)
        self.log = log
        self.setFormatter(logging.Formatter(FORMAT))
        self.setLevel(logging.INFO)

    def _open(self):
        self.baseFilename = str(self.log.ensure().absolute())
        return super()._open()


class _Terminal(logging.Handler):
    """serveoff's own warnings, as serveoff's lines on the terminal."""

    def __init__(self, say: Say) -> None:
        super().__init__(logging.WARNING)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        self.say(f"serveoff: {record.levelname.lower()}: {record.getMessage()}")


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's loader with stderr on the log file and TensorFlow's C++ log level set."""

    def __init__(self, loader: importlib.abc.Loader, log: LibraryLog) -> None:
        self.loader = loader
        self.log = log

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        name, level = TF_LOG_LEVEL
        given = os.environ.get(name)
        os.environ.setdefault(name, level)
        try:
            with self.log.holding_stderr():
                self.loader.exec_module(module)
                if hasattr(module, "config"):  # CUDA's probe logs an error on a machine without CUDA
                    module.config.list_physical_devices()
        finally:
            if given is None:
                os.environ.pop(name, None)
            module.__loader__ = module.__spec__.loader = self.loader


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``QUIET_IMPORTS`` as usual, but loads them through ``_QuietLoader`` (once)."""

    def __init__(self, log: LibraryLog) -> None:
        self.log = log

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in QUIET_IMPORTS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, self.log)
        return spec


def log_path(argv: list[str], now: datetime | None = None) -> Path:
    """``.serveoff/logs/<command>-<UTC time>.log`` for the command line ``argv``."""
    command = argv[1] if len(argv) > 1 and re.fullmatch(r"[a-z][a-z-]*", argv[1]) else "serveoff"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return LOG_DIR / f"{command}-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def quiet_libraries(path: Path, say: Say) -> Iterator[LibraryLog]:
    """Within it, the libraries' messages go to ``path`` (said once with ``say``), serveoff's to ``say``."""
    log = LibraryLog(path, say)
    root, own = logging.getLogger(), logging.getLogger("serveoff")
    to_file, to_terminal = _FileHandler(log), _Terminal(say)
    finder = None if any(name in sys.modules for name in QUIET_IMPORTS) else _QuietFinder(log)
    saved_level = root.level
    root.addHandler(to_file)
    root.setLevel(min(saved_level, logging.INFO))
    own.addHandler(to_terminal)
    logging.captureWarnings(True)
    if finder is not None:
        sys.meta_path.insert(0, finder)
    try:
        yield log
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        logging.captureWarnings(False)
        own.removeHandler(to_terminal)
        root.removeHandler(to_file)
        root.setLevel(saved_level)
        to_file.close()
