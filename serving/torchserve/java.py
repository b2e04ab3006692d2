"""The Java runtime TorchServe's frontend needs: where it is and which version it is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from serveoff.errors import ServeoffError

MIN_MAJOR = 17
INSTALL_HINT = "run ./setup.sh or apt-get install openjdk-17-jdk-headless"
VERSION_LINE = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


def java_executable() -> str:
    """The ``java`` TorchServe's launcher will run: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise ServeoffError(f"TorchServe needs Java {MIN_MAJOR} ({where}): {INSTALL_HINT}")
    return java


def java_version(java: str) -> str:
    """The version ``java -version`` reports, e.g. ``17.0.15``; a clear error when it is too old."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ServeoffError(
            f"cannot run {java} -version ({err}); TorchServe needs Java {MIN_MAJOR}: {INSTALL_HINT}"
        ) from None
    return parse_java_version(done.stderr + done.stdout, java)


def parse_java_version(output: str, java: str = "java") -> str:
    """The version in ``java -version``'s output; a clear error when there is none or it is too old."""
    match = VERSION_LINE.search(output)
    if not match:
        raise ServeoffError(
            f"{java} -version reports no version; TorchServe needs Java {MIN_MAJOR}: {INSTALL_HINT}"
        )
    major = int(match[2] if match[1] == "1" else match[1])  # Java 8 and older call themselves 1.x
    version = match[0].split('"')[1]
    if major < MIN_MAJOR:
        raise ServeoffError(f"TorchServe needs Java {MIN_MAJOR}, {java} is Java {version}: {INSTALL_HINT}")
    return version
