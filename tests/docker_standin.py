"""A Docker engine for the tests, and a stand-in for the servers' images.

No registry is reachable from the test machines, so the official images cannot be pulled. The stand-in
image is an empty root filesystem made with ``docker import``; containers get this machine's ``/usr``,
``/etc``, Python and repository mounted read-only, so they run the venv's real TorchServe and the TF
Serving test fake. It checks the launcher, the compose file and the commands, never the images' contents.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
STANDIN = "serveoff-test-standin"
KSERVE_VENV = ROOT / ".venv-kserve"  # made by setup.sh


def engine() -> docker.DockerClient:
    """The Docker engine; CI must have one (.ci/run starts it), elsewhere the test is skipped."""
    try:
        client = docker.from_env()
        client.ping()
        return client
    except DockerException as err:
        if os.environ.get("SERVEOFF_CI"):
            pytest.fail(f"no Docker engine answers ({err}); .ci/run installs docker.io and starts dockerd")
        pytest.skip(f"no Docker engine answers here ({str(err)[:120]})")


def host_mounts() -> tuple[Path, ...]:
    """What a stand-in container needs from this machine, mounted read-only at the same paths."""
    return (Path("/usr"), Path("/etc"), Path(sys.base_prefix).resolve(), ROOT)


def container_path() -> str:
    """PATH in a stand-in container: the TF Serving fake and this venv first."""
    return f"{FAKES}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def standin_image(client: docker.DockerClient, workdir: Path) -> str:
    """The stand-in image (made once per PATH): an empty root with the directories a container needs.

    ``SERVEOFF_TEST_BIND`` makes the TF Serving fake bind every address inside the container, as the real
    server does, so its ports can be published.
    """
    tag = f"{STANDIN}:{hashlib.sha256(container_path().encode()).hexdigest()[:12]}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    archive = workdir / "standin.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "sbin", "home", "work", "opt"):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(entry)
        for name, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            entry = tarfile.TarInfo(name)
            entry.type, entry.linkname = tarfile.SYMTYPE, target
            tar.addfile(entry)
    changes = ["--change", f"ENV PATH={container_path()}", "--change", "ENV SERVEOFF_TEST_BIND=0.0.0.0"]
    subprocess.run(["docker", "import", *changes, str(archive), tag], check=True, capture_output=True)
    return tag


def foreign_image(client: docker.DockerClient, workdir: Path) -> str:
    """An empty image built for another architecture than the engine's (amd64 on arm64 engines, else
    arm64), as TF Serving's amd64-only image is on an arm64 machine: loaded with ``docker load`` from an
    archive in the image format, so no registry and no emulator are needed."""
    arch = "amd64" if client.version()["Arch"] == "arm64" else "arm64"
    tag = f"{STANDIN}-{arch}:0"
    layer = workdir / "layer.tar"
    with tarfile.open(layer, "w"):
        pass  # an empty layer
    diff_id = "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    archive = workdir / "foreign.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(layer, "layer.tar")
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    subprocess.run(["docker", "load", "--input", str(archive)], check=True, capture_output=True)
    return tag


def compose_override(image: str, results: Path, bench_command: list[str]) -> str:
    """A compose override that runs every service from the stand-in image, the bench with
    ``bench_command`` and writing to ``results``; the compose file itself is used as it is."""
    mounts = "".join(f"      - {path}:{path}:ro\n" for path in host_mounts())
    service = f"    image: {image}\n    volumes:\n{mounts}"
    bench = f"{service}      - {results}:/work/results\n    command: {json.dumps(bench_command)}\n"
    # KServe's image has kserve on its PATH's python; here that is this repository's own KServe venv
    kserve = f"    environment:\n      PATH: {KSERVE_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin\n"
    return (
        "services:\n"
        + "".join(f"  {name}:\n{service}" for name in ("build", "torchserve", "tfserving"))
        + "".join(f"  {name}:\n{service}{kserve}" for name in ("kserve", "kserve-onnx"))
        + f"  bench:\n{bench}"
    )
