"""Child processes that serveoff starts: own session, log file, CPU pinning, stopped by PID."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from serveoff.errors import ServeoffError

PR_SET_PDEATHSIG = 1  # prctl option: the signal a child gets when its parent dies
EXIT_GRACE_S = 1.0  # how long a server whose connection dropped may take to be seen dead


class ServerError(ServeoffError):
    """A server that would not start, died or stopped answering; the message carries its log tail."""


def read_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of the text file ``path`` ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One server process (and everything it forks), with its output in ``log_path``.

    It runs in a session of its own, so stopping it reaches every descendant by PID and no
    process is left behind, even when a parent (TorchServe's Python wrapper, say) exits first.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        cpus: Sequence[int] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.die_with_parent = die_with_parent  # Linux: SIGTERM it when serveoff dies, even by SIGKILL
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.cpus = tuple(cpus) if cpus else None
        self.popen: subprocess.Popen[bytes] | None = None
        self._known: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        """The PID of the process serveoff started."""
        if self.popen is None:
            raise RuntimeError("process not started")
        return self.popen.pid

    def start(self) -> None:
        """Start the process; its CPU affinity (when pinned) is inherited by all it forks."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cpus, die_with_parent = self.cpus, self.die_with_parent

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)
            if die_with_parent:
                ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=pin,
            )
        self._known = {self.pid: psutil.Process(self.pid)}

    def exit_code(self) -> int | None:
        """The exit code once the started process has ended, else ``None``."""
        return None if self.popen is None else self.popen.poll()

    def processes(self) -> list[psutil.Process]:
        """The live processes of this server: the started one and every descendant."""
        self._remember_descendants()
        return [p for p in self._known.values() if _alive(p)]

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        return read_tail(self.log_path, lines)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process of the server, then SIGKILL what is left after ``grace`` seconds."""
        if self.popen is None:
            return
        terminate(self.processes(), grace)
        self.popen.wait(timeout=5)

    def _remember_descendants(self) -> None:
        for proc in session_members(self.pid):
            self._known.setdefault(proc.pid, proc)


def session_members(sid: int) -> list[psutil.Process]:
    """Every live process of session ``sid``: a server started in its own session and all it forked,
    including children whose parent already exited."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and _alive(proc):
                members.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def terminate(procs: list[psutil.Process], grace: float = 10.0) -> None:
    """SIGTERM ``procs``, then SIGKILL whatever is left after ``grace`` seconds."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    _, survivors = psutil.wait_procs(procs, timeout=grace)
    for proc in survivors:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(survivors, timeout=5)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)


@dataclass(frozen=True)
class Watched:
    """What a readiness loop watches while a server starts, natively or in a container."""

    what: str  # how messages name it: "TorchServe", "the TorchServe container"
    gone: Callable[[], str | None]  # why it no longer runs ("exited with code 1"); None while it runs
    tail: Callable[[int], str]  # the last lines of its output
    where: str = ""  # where its whole output is, for the messages: "; log PATH"


def await_ready(
    ready: Callable[[], bool],
    watched: Watched,
    timeout: float,
    fatal: Callable[[str], str | None] | None = None,
) -> None:
    """Poll ``ready()`` until it holds; fail fast with the output's tail when the server dies or fails.

    ``fatal`` looks at the last 200 lines and returns a reason when start-up can no longer succeed (a worker
    that died while loading its model, say), so a broken server is reported in seconds, not at the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        gone = watched.gone()
        if gone:
            raise ServerError(f"{watched.what} {gone} while starting{watched.where}:\n{watched.tail(20)}")
        reason = fatal(watched.tail(200)) if fatal else None
        if reason:
            raise ServerError(
                f"{watched.what} failed to start: {reason}{watched.where}:\n{watched.tail(20)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise ServerError(
                f"{watched.what} was not ready after {timeout:.0f} s{watched.where}:\n{watched.tail(20)}"
            )
        time.sleep(0.25)


def wait_until_ready(
    ready: Callable[[], bool],
    proc: ManagedProcess,
    *,
    what: str,
    timeout: float,
    fatal: Callable[[str], str | None] | None = None,
) -> None:
    """``await_ready`` for a native server: ``proc``, the process serveoff started, and its log."""

    def gone() -> str | None:
        code = proc.exit_code()
        return None if code is None else f"exited with code {code}"

    await_ready(ready, Watched(what, gone, proc.log_tail, f"; log {proc.log_path}"), timeout, fatal)


def diagnosis(proc: ManagedProcess | None, what: str, problem: str, lost: bool = False) -> ServerError:
    """The error for a failed request to the server ``proc`` runs: whether it died (with its log tail) or
    still runs. ``lost``: the connection failed, so the server may be dying; it gets a moment to be reaped."""
    if proc is None:
        return ServerError(f"{problem}; {what} was not started")
    code = proc.exit_code()
    deadline = time.monotonic() + EXIT_GRACE_S
    while lost and code is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a killed server's connections drop a moment before it can be reaped
        code = proc.exit_code()
    if code is None:
        return ServerError(f"{problem}; {what} (pid {proc.pid}) is still running; log {proc.log_path}")
    return ServerError(f"{problem}; {what} exited with code {code}; log {proc.log_path}:\n{proc.log_tail()}")


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """A clear error when ``host:port`` is taken, before a server fails on it less clearly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise ServeoffError(
                f"port {port} on {host} ({what}) is in use; stop the process that holds it (`serveoff down` "
                "stops the servers `serveoff up` started)"
            ) from None


def free_port_base(count: int, host: str = "127.0.0.1") -> int:
    """A port such that ``port .. port+count-1`` were all free a moment ago."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            base = sock.getsockname()[1]
        if base + count < 65536 and all(_free(host, base + i) for i in range(count)):
            return base
    raise ServeoffError(f"found no {count} consecutive free ports on {host}")


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
