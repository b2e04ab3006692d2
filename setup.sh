#!/usr/bin/env bash
# Set up a fresh machine for serveoff: Java 17 for TorchServe and Chromium for the report's browser test
# (Debian/Ubuntu apt), and a .venv with the pinned Python packages. Safe to run again; it installs only
# what is missing.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
java -version 2>&1 | grep -q 'version "17' || need_apt+=(openjdk-17-jdk-headless)
command -v chromium >/dev/null || need_apt+=(chromium)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install ${need_apt[*]} with apt-get; run: sudo $0" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "setup: serveoff needs Python 3.11 (the pinned torch 2.13.0 CPU wheel); set PYTHON=/path/to/python3.11" >&2
    exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch is pinned and installed first so that nothing pulls a CUDA build.
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e '.[dev]'
echo "setup: done; run the tests with: .venv/bin/pytest"
