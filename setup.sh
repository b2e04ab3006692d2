#!/usr/bin/env bash
# Set up a fresh machine for serveoff: Java 17 for TorchServe (Debian/Ubuntu apt), Chromium for the report's
# browser test where apt can install it (as root; measuring never needs it), a .venv with the pinned
# Python packages and .venv-kserve with KServe's. Safe to run again; it installs only what is missing.
#
#   SERVEOFF_TORCH=cpu   (the default) torch 2.13.0's CPU build, from PyTorch's CPU wheel index
#   SERVEOFF_TORCH=cuda  the default index's build: with CUDA on Linux x86_64 (gigabytes of NVIDIA packages)
set -euo pipefail
cd "$(dirname "$0")"

torch_build=${SERVEOFF_TORCH:-cpu}
case $torch_build in
    cpu) torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu) ;;  # where 2.13.0 is 2.13.0+cpu
    cuda) torch_index=() ;;
    *) echo "setup: SERVEOFF_TORCH=$torch_build is neither cpu nor cuda; unset it for the CPU build" >&2
       exit 2 ;;
esac
python=${PYTHON:-python3}
# Where PyTorch's CPU index cannot be reached (a machine that sees only a PyPI mirror with the CPU wheel on
# it), pip still looks there but gives up at once, instead of retrying every dependency five times.
if ((${#torch_index[@]})) && ! "$python" -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)' \
    "${torch_index[1]}/" >/dev/null 2>&1; then
    torch_index+=(--retries 0)
fi

root=false
[ "$(id -u)" -eq 0 ] && root=true
need_apt=()
java -version 2>&1 | grep -q 'version "17' || need_apt+=(openjdk-17-jdk-headless)
if ! command -v chromium >/dev/null; then
    if $root; then
        need_apt+=(chromium)
    else
        echo "setup: no chromium, and installing it needs root (sudo apt-get install chromium): the report's" \
            "browser test will be skipped; measuring does not need it" >&2
    fi
fi
if ((${#need_apt[@]})); then
    if ! $root; then
        echo "setup: Java 17 is missing: run this as root (sudo $0) to install it, or put a Java 17 on PATH" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "setup: serveoff needs Python 3.11 (the pinned torch 2.13.0 CPU wheel); set PYTHON=/path/to/python3.11" >&2
    exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch is pinned and installed first, so that nothing else picks its build. A .venv holding the other build
# than SERVEOFF_TORCH asks for gets that one instead.
installed=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [[ $torch_build == cuda && $installed == *+cpu ]] \
    || [[ $torch_build == cpu && $installed == 2.13.0 && $(uname -sm) == "Linux x86_64" ]]; then
    .venv/bin/pip uninstall --quiet -y torch
fi
.venv/bin/pip install --quiet ${torch_index[@]+"${torch_index[@]}"} torch==2.13.0
.venv/bin/pip install --quiet -e '.[dev]'

# KServe's own virtualenv: kserve 0.21.0 pins psutil<6 and older protobuf and grpcio-tools than serveoff, so
# its server runs from .venv-kserve (serving/kserve/). pip runs only when a pin is missing or differs.
kserve_pins=(kserve==0.21.0 torch==2.13.0 onnxruntime==1.32.0 numpy==2.4.6)
[ -x .venv-kserve/bin/python ] || "$python" -m venv .venv-kserve
kserve_have=$(.venv-kserve/bin/python -c 'import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, _, want = pin.partition("==")
    try:
        have = m.version(name)
    except m.PackageNotFoundError:
        have = ""
    print(pin if have.split("+")[0] == want else "")' "${kserve_pins[@]}" | grep -c . || true)
if [ "$kserve_have" -ne "${#kserve_pins[@]}" ]; then
    # torch first, from the same index as serveoff's, so that kserve's requirements do not pick its build
    .venv-kserve/bin/pip install --quiet ${torch_index[@]+"${torch_index[@]}"} torch==2.13.0
    .venv-kserve/bin/pip install --quiet "${kserve_pins[@]}"
fi
echo "setup: done; run the tests with: .venv/bin/pytest"
