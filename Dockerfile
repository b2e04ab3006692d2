# serveoff's own image, for docker compose's build and bench services (`serveoff prepare`, `serveoff bench`).
# Python and torch match what the TorchServe image runs and what built the archives: 3.11 and torch 2.13.0.
FROM python:3.11.7-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# torch.compile's inductor compiles C++ kernels on the CPU: the torch:compiled runtime needs a compiler.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*

# torch first, pinned, from PyTorch's CPU index: an unpinned torch pulls gigabytes of CUDA packages.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY serveoff serveoff
COPY models models
COPY serving serving
COPY loadtest loadtest
COPY report report
RUN pip install . && serveoff --help > /dev/null

WORKDIR /work
CMD ["serveoff", "--help"]
