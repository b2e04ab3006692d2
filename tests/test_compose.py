"""The compose file and the Dockerfiles: validated by docker-compose itself, and checked for the
invariants a fair, loopback-only comparison needs. Nothing here needs a Docker engine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import typer
import yaml

from serveoff.cli import app
from serveoff.serving.targets import SERVERS, server_class

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_FILE = ROOT / ".env"
SERVER_NAMES = list(SERVERS)
ONE_SHOT = "build"
BENCHES = ("bench", "bench-full")
PINS = {
    req.split("==")[0]: req.split("==")[1]
    for req in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if "==" in req
}


def docker_compose() -> str:
    """docker-compose (Debian's, which .ci/run installs); CI fails without it, elsewhere the test skips."""
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing; .ci/run installs it (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return found


def resolved(env: dict[str, str] | None = None) -> dict:
    """The compose file as docker-compose resolves it: anchors merged, variables substituted."""
    done = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SERVEOFF_", "COMPOSE_"))}
        | (env or {}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def env_defaults() -> dict[str, str]:
    lines = [line for line in ENV_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_docker_compose_validates_the_file() -> None:
    done = subprocess.run(
        [docker_compose(), "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_both_servers_get_the_limits_the_environment_sets() -> None:
    services = resolved({"SERVEOFF_SERVER_CPUS": "0-1", "SERVEOFF_SERVER_MEMORY": "3g"})["services"]
    for name in SERVER_NAMES:
        assert services[name]["cpuset"] == "0-1", name
        assert services[name]["mem_limit"] == services[name]["memswap_limit"] == "3g", name
    limits = {(s["cpuset"], s["mem_limit"]) for name, s in services.items() if name in SERVER_NAMES}
    assert len(limits) == 1


def test_the_defaults_in_the_file_are_those_of_dot_env() -> None:
    """With or without .env the stack runs the same: the file's own defaults equal the documented ones."""
    raw = COMPOSE.read_text()
    defaults = env_defaults()
    for key, value in defaults.items():
        if key.startswith("SERVEOFF_"):
            found = set(re.findall(r"\$\{" + key + r":-([^}]*)\}", raw))
            assert found == {value}, f"{key}: the file defaults to {found}, .env to {value}"
    assert defaults["COMPOSE_PROFILES"] == "quick"


def test_every_service_has_a_healthcheck_and_waits_for_health() -> None:
    services = resolved()["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for needed, how in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed == ONE_SHOT else "service_healthy"
            assert how["condition"] == expected, f"{name} -> {needed}: {how}"
    for name in SERVER_NAMES:
        assert services[name]["depends_on"] == {ONE_SHOT: {"condition": "service_completed_successfully"}}
    for name in BENCHES:
        assert set(services[name]["depends_on"]) == set(SERVER_NAMES)


def test_ports_are_published_on_loopback_only_and_never_management() -> None:
    services = resolved()["services"]
    for name, service in services.items():
        for host_ip, published, target in _ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {target} beyond loopback"
            assert published == target, f"{name}: the same port number inside and out"
    for name in SERVER_NAMES:
        cls = server_class(name)
        server = cls([], _config(), Path("/nonexistent"), cls.default_port_base)
        published = sorted(target for _, _, target in _ports(services[name]))
        assert published == sorted(server.public_ports()), name
    torchserve = server_class("torchserve")([], _config(), Path("/x"), 8080)
    management = {torchserve.ports.management, torchserve.ports.grpc_management}
    assert not management & {target for _, _, target in _ports(services["torchserve"])}
    assert [target for _, _, target in _ports(services["bench"])] == [8089]


def test_images_are_pinned_and_are_what_serveoff_up_docker_runs() -> None:
    services = resolved()["services"]
    for name, service in services.items():
        image, _, tag = service["image"].rpartition(":")
        assert image and tag and tag != "latest", f"{name}: image {service['image']} is not pinned"
    for name in SERVER_NAMES:
        assert services[name]["image"] == server_class(name).default_image, name
        assert services[name]["build"]["context"] == str(ROOT / "serving" / name)
    assert PINS["tensorflow-serving-api"] in services["tfserving"]["image"]
    assert f"{PINS['torchserve']}-torch{PINS['torch']}" in services["torchserve"]["image"]


def test_a_quick_and_a_full_profile_each_run_one_bench() -> None:
    services = resolved()["services"]
    assert services["bench"]["profiles"] == ["quick"]
    assert services["bench-full"]["profiles"] == ["full"]
    assert all("profiles" not in services[name] for name in [ONE_SHOT, *SERVER_NAMES])


def test_services_run_serveoff_commands_that_parse() -> None:
    """Every serveoff command in the file parses with the CLI's own options, as the native path runs them."""
    services = resolved()["services"]
    group = typer.main.get_command(app)
    commands = {name: s["command"] for name, s in services.items() if s.get("command", [""])[0] == "serveoff"}
    assert set(commands) == {ONE_SHOT, *BENCHES}
    for argv in commands.values():
        command = group.commands[argv[1]]
        with click.Context(group) as parent:
            command.make_context(argv[1], list(argv[2:]), parent=parent)  # raises on an unknown option
    stack = _flag(commands[ONE_SHOT], "--stack")
    for bench in BENCHES:
        assert _flag(commands[bench], "--stack") == stack
        assert "--ui" in commands[bench] and _flag(commands[bench], "--ui-host") == "0.0.0.0"


def test_volumes_sit_at_the_same_paths_in_every_service() -> None:
    """Launch files name artifacts and configs by path: each volume must be mounted at one place."""
    services = resolved()["services"]
    places: dict[str, set[str]] = {}
    for service in services.values():
        for source, target in _volumes(service):
            if not source.startswith(("/", ".")):  # a named volume, not a host path
                places.setdefault(source, set()).add(target)
    assert places == {"artifacts": {"/work/artifacts"}, "stack": {"/work/stack"}}
    for name in SERVER_NAMES:
        entrypoint = services[name]["entrypoint"]
        assert entrypoint == ["sh", f"/work/stack/{name}/launch.sh"]


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for key, value in env_defaults().items():
        assert f"`{key}`" in readme and value in readme, key
    assert "docker compose up" in readme and "127.0.0.1:8089" in readme and "./results/" in readme


def test_dockerfiles_pin_their_bases_and_the_versions_that_built_the_artifacts() -> None:
    torchserve = (ROOT / "serving/torchserve/Dockerfile").read_text()
    tfserving = (ROOT / "serving/tfserving/Dockerfile").read_text()
    serveoff = (ROOT / "Dockerfile").read_text()
    assert _from(torchserve) == f"pytorch/torchserve:{PINS['torchserve']}-cpu"
    assert _from(tfserving) == f"tensorflow/serving:{PINS['tensorflow-serving-api']}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", _from(serveoff))
    for text in (torchserve, serveoff):
        assert f"torch=={PINS['torch']}" in text
        assert "download.pytorch.org/whl/cpu" in text  # never the CUDA build
    for package in ("torchserve", "numpy"):
        assert f"{package}=={PINS[package]}" in torchserve
    assert "pyyaml==" in torchserve  # TorchServe's worker needs it and does not declare it
    for text in (torchserve, tfserving):
        assert re.search(r"^ENTRYPOINT \[\]$", text, re.MULTILINE)  # the launch script replaces it
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "artifacts", "results", ".git"} <= set(ignored)


def _ports(service: dict) -> list[tuple[str, int, int]]:
    """(host address, published port, container port) of each port, in either compose syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):  # docker compose v2: the long syntax
            ports.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        host_ip, published, target = port.split("/")[0].rsplit(":", 2)  # docker-compose v1: ip:pub:target
        ports.append((host_ip, int(published), int(target)))
    return ports


def _volumes(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each mount, in either compose syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((volume["source"], volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
    return mounts


def _from(dockerfile: str) -> str:
    lines = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert len(lines) == 1
    return lines[0]


def _flag(argv: list[str], name: str) -> str:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {shlex.join(argv)}")


def _config():
    from serveoff.serving.resources import server_config

    return server_config("matched", cpus=(0,))
