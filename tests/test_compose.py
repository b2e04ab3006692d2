"""The compose file and the Dockerfiles: validated by docker-compose itself, and checked for the
invariants a fair, loopback-only comparison needs. Nothing here needs a Docker engine."""

from __future__ import annotations

import http.server
import inspect
import os
import re
import shlex
import shutil
import subprocess
import threading
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
MARKER = "/tmp/serveoff-healthy"  # a healthcheck's sign, inside its container, that the server was healthy
PINS = {
    req.split("==")[0]: req.split("==")[1]
    for req in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    if "==" in req
}


def docker_compose() -> str:
    """docker-compose (Debian's, which .ci/run installs); CI fails without it, elsewhere the test skips."""
    found = shutil.which("docker-compose")
    if found is None:
        if os.environ.get("SERVEOFF_CI"):
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
        folder = Path(inspect.getfile(server_class(name))).parent  # kserve-onnx shares kserve's folder
        assert services[name]["build"]["context"] == str(folder)
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
    assert _from(tfserving) == "tensorflow/serving:${SERVEOFF_TFSERVING_VERSION}"
    default = re.search(r"^ARG SERVEOFF_TFSERVING_VERSION=(\S+)$", tfserving, re.MULTILINE)
    assert default, "the TF Serving release is a build argument with a default"
    assert default[1] == PINS["tensorflow-serving-api"] == env_defaults()["SERVEOFF_TFSERVING_VERSION"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", _from(serveoff))
    for text in (torchserve, serveoff):
        assert f"torch=={PINS['torch']}" in text
        assert "download.pytorch.org/whl/cpu" in text  # never the CUDA build
    for package in ("torchserve", "numpy"):
        assert f"{package}=={PINS[package]}" in torchserve
    assert "pyyaml==" in torchserve  # TorchServe's worker needs it and does not declare it
    assert re.search(r"apt-get install .*\bg\+\+", serveoff)  # torch:compiled's inductor compiles C++
    for text in (torchserve, tfserving):
        assert re.search(r"^ENTRYPOINT \[\]$", text, re.MULTILINE)  # the launch script replaces it
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "artifacts", "results", ".git"} <= set(ignored)


def test_the_tf_serving_release_is_one_setting_for_the_base_and_the_tag() -> None:
    """Where Docker Hub lacks the pinned release, SERVEOFF_TFSERVING_VERSION picks another: it names the
    base image (a build argument) and tags the image, which is what the manifest records as run."""
    tfserving = resolved({"SERVEOFF_TFSERVING_VERSION": "2.20.0"})["services"]["tfserving"]
    assert tfserving["image"] == "serveoff-tfserving:2.20.0"
    assert tfserving["build"]["args"] == {"SERVEOFF_TFSERVING_VERSION": "2.20.0"}


def test_servers_run_under_an_init_that_passes_sigterm_on() -> None:
    services = resolved()["services"]
    for name in SERVER_NAMES:
        assert services[name]["init"] is True, name  # else `docker compose down` waits 10 s, then kills


def test_healthchecks_start_no_python_and_stop_probing_once_healthy() -> None:
    """The measured containers' healthchecks run on the servers' CPUs for the whole measurement."""
    services = resolved()["services"]
    for name in [*SERVER_NAMES, *BENCHES]:
        kind, command = services[name]["healthcheck"]["test"]
        assert kind == "CMD-SHELL" and "python" not in command, name
        assert command.startswith(f"test -e {MARKER} || {{ bash -c "), name
        assert command.endswith(f" && touch {MARKER}; }}"), name


@pytest.mark.parametrize(
    ("service", "path", "starting", "ready"),
    [
        ("torchserve", "/ping", (500, '{"status": "Unhealthy"}'), (200, '{"status": "Healthy"}')),
        ("tfserving", "/v1/models/digits-mlp", (200, '{"state": "START"}'), (200, '{"state": "AVAILABLE"}')),
    ],
)  # fmt: skip
def test_a_healthcheck_probes_until_healthy_then_only_tests_its_marker(service, path, starting, ready,
                                                                       tmp_path) -> None:  # fmt: skip
    """The compose file's own healthcheck command, its port and marker moved, run by this machine's sh and
    bash against a stand-in HTTP server on 127.0.0.1 (the real servers answer it in test_docker.py)."""
    answers, asked = [starting], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = answers[-1]
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args) -> None:
            pass

    command = resolved()["services"][service]["healthcheck"]["test"][1]
    port = {"torchserve": 8080, "tfserving": 8501}[service]
    marker = tmp_path / "healthy"
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        moved = f"127.0.0.1/{server.server_port}"
        local = command.replace(MARKER, str(marker)).replace(f"127.0.0.1/{port}", moved)

        def check() -> int:
            return subprocess.run(["sh", "-c", local], capture_output=True, timeout=10).returncode

        assert check() != 0 and not marker.exists() and asked == [path]  # starting: unhealthy
        answers.append(ready)
        assert check() == 0 and marker.exists() and asked == [path, path]
        assert check() == 0 and check() == 0 and asked == [path, path]  # healthy: the server is left alone
        server.shutdown()


def test_the_load_generator_cpus_are_checked_by_the_build_service() -> None:
    """`serveoff prepare` gets the bench's CPU set: a CPU the machine lacks stops the stack before a build."""
    services = resolved({"SERVEOFF_LOADGEN_CPUS": "3"})["services"]
    assert _flag(services[ONE_SHOT]["command"], "--loadgen-cpus") == "3"
    assert all(services[name]["cpuset"] == "3" for name in BENCHES)


def test_the_artifacts_can_be_a_host_directory_of_your_own_models() -> None:
    services = resolved({"SERVEOFF_ARTIFACTS": "./my-models"})["services"]
    for name, service in services.items():
        mounts = dict((target, source) for source, target in _volumes(service))
        assert mounts["/work/artifacts"] == str(ROOT / "my-models"), name


def test_the_docker_socket_is_a_setting() -> None:
    services = resolved({"SERVEOFF_DOCKER_SOCKET": "/run/user/1000/docker.sock"})["services"]
    for name in BENCHES:
        assert ("/run/user/1000/docker.sock", "/var/run/docker.sock") in _volumes(services[name]), name


def test_the_torchserve_image_is_byte_compiled_and_keeps_no_installer_cache() -> None:
    """The server runs as model-server and cannot write bytecode into the root-owned venv and Python: all of
    it is compiled when the image is built, and uv's cache is never written into a layer."""
    dockerfile = (ROOT / "serving/torchserve/Dockerfile").read_text()
    runs = [block for block in re.split(r"\n(?=[A-Z]+ )", dockerfile) if block.startswith("RUN ")]
    (run,) = [block for block in runs if "uv " in block]  # one RUN: one layer
    steps = [step.strip() for step in run.removeprefix("RUN ").replace("\\\n", " ").split("&&")]
    uv = [step for step in steps if step.startswith("uv ")]
    assert len(uv) == 3 and all("--no-cache" in step.split() for step in uv), uv
    installs = [step for step in uv if step.startswith("uv pip install")]
    assert len(installs) == 2 and all("--compile-bytecode" in step.split() for step in installs)
    assert any("-m compileall" in step and 'get_path("stdlib")' in step for step in steps)  # the CPython


def test_setup_installs_torch_from_the_cpu_index_unless_told_cuda() -> None:
    script = (ROOT / "setup.sh").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in script
    assert "torch==2.13.0" in script and PINS["torch"] == "2.13.0"
    done = subprocess.run(["bash", str(ROOT / "setup.sh")], env=os.environ | {"SERVEOFF_TORCH": "rocm"},
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "setup: SERVEOFF_TORCH=rocm is neither cpu nor cuda; unset it for the CPU build"
    ]


def test_the_ci_job_runs_on_a_hosted_runner_without_root() -> None:
    job = yaml.safe_load((ROOT / ".github/workflows/perf-gate.yml").read_text())["jobs"]["gate"]
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert not any(word in run.split() for run in runs for word in ("sudo", "apt-get", "docker"))
    setup = [step for step in job["steps"] if step.get("run") == "./setup.sh"]
    python = "${{ steps.python.outputs.python-path }}"  # setup-python's, whatever it names python3
    assert len(setup) == 2 and all(step["env"]["PYTHON"] == python for step in setup)


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
