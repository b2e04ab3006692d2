"""The servers in Docker containers, on a real Docker engine: serveoff's launcher (docker SDK) and the
whole docker compose stack.

No registry is reachable here, so the official images cannot be pulled: the containers run a stand-in
image (``docker_standin.py``) with this machine's TorchServe and the TF Serving test fake mounted in. The
smoke test of the real images runs only where they exist.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import numpy as np
import pytest
import requests
from docker.errors import ImageNotFound, NotFound

from serveoff.errors import ServeoffError
from serveoff.models.artifacts import ArtifactLayout
from serveoff.models.build import BuildResult
from serveoff.serving import fleet, runtimes
from serveoff.serving.container import LABEL, ContainerOptions, ContainerServer, ContainerUsage
from serveoff.serving.process import ServerError, free_port_base
from serveoff.serving.resources import server_config
from serveoff.serving.targets import SERVERS, server_class
from serveoff.serving.tfserving.server import TFServing
from serveoff.serving.torchserve.server import TorchServe

from .cli_runner import run_cli
from .commands import QUICK, serveoff
from .docker_standin import ROOT, compose_override, engine, foreign_image, host_mounts, standin_image
from .test_compose import docker_compose, resolved
from .wire import predict

MEMORY = 1 << 30


@pytest.fixture(scope="module")
def client():
    return engine()


@pytest.fixture(scope="module")
def image(client, tmp_path_factory) -> str:
    return standin_image(client, tmp_path_factory.mktemp("standin"))


@pytest.fixture
def digits(built: dict[str, BuildResult]) -> ArtifactLayout:
    return ArtifactLayout(built["digits-mlp"].root, "digits-mlp")


def ours(client) -> list:
    """Containers serveoff started (they carry its label), running or not."""
    return client.containers.list(all=True, filters={"label": LABEL})


def test_torchserve_runs_in_a_container_under_the_limits_it_was_given(
    client, image, digits, tmp_path, capsys, monkeypatch
) -> None:
    before = {c.id for c in ours(client)}
    config = server_config("matched", cpus=(1,))
    base = free_port_base(5)
    options = ContainerOptions(MEMORY, {"torchserve": image}, host_mounts())
    server = ContainerServer(TorchServe([digits], config, tmp_path / "torchserve", base), options)
    state = tmp_path / "servers.json"
    try:
        server.start(timeout=120)
        host = server.container.attrs["HostConfig"]
        assert host["CpusetCpus"] == "1" and host["Memory"] == host["MemorySwap"] == MEMORY
        published = {
            int(port.split("/")[0]): [(b["HostIp"], int(b["HostPort"])) for b in bindings]
            for port, bindings in host["PortBindings"].items()
        }
        assert published == {p: [("127.0.0.1", p)] for p in server.server.public_ports()}
        management = f"http://127.0.0.1:{server.server.ports.management}/models"
        with pytest.raises(requests.ConnectionError):
            requests.get(management, timeout=2)  # bound inside the container only, never published

        usage = ContainerUsage(server.container)
        cpu_before = usage.cpu_seconds()
        sample = np.load(digits.samples)[:4]
        for _ in range(200):
            assert predict(server, "digits-mlp", "grpc", sample).shape == (4, 10)
        assert usage.cpu_seconds() - cpu_before > 0.05
        assert 50 * 2**20 < usage.memory_bytes() < MEMORY
        assert usage.running()

        rec = fleet.record(server)
        assert (rec.launcher, rec.container, rec.memory_bytes) == ("docker", server.container.id, MEMORY)
        assert rec.versions["torchserve"] == "0.12.0" and rec.versions["torch"].startswith("2.13.0")
        assert rec.versions["image"].startswith(image)
        assert rec.versions["architecture"] == client.version()["Arch"]
        fleet.write_state(state, [rec])
    except BaseException:
        server.stop()
        raise
    result = run_cli(["down", "--state", str(state)], capsys, monkeypatch)  # stops it by container ID
    assert result.code == 0 and f"container {server.container.short_id}" in result.stdout
    with pytest.raises(NotFound):
        client.containers.get(server.container.id)
    assert "Model server started" in (tmp_path / "torchserve" / "torchserve.container.log").read_text()
    assert {c.id for c in ours(client)} == before


def test_a_server_that_dies_in_its_container_is_reported_with_its_output(
    client, image, digits, tmp_path
) -> None:
    before = {c.id for c in ours(client)}
    broken = tmp_path / "broken"
    (broken / "tfserving" / digits.name / "1").mkdir(parents=True)  # a version with no SavedModel in it
    (broken / "manifest.json").write_text(digits.manifest.read_text())
    layout = ArtifactLayout(broken, digits.name)
    options = ContainerOptions(MEMORY, {"tfserving": image}, host_mounts())
    config = server_config("matched", cpus=(1,))
    server = ContainerServer(TFServing([layout], config, tmp_path / "tfserving", free_port_base(2)), options)
    dead = r"(?s)container exited with code \d+ while starting:\n.*digits-mlp"
    with pytest.raises(ServerError, match=dead):
        server.start(timeout=60)
    assert {c.id for c in ours(client)} == before, "the dead container was left behind"


def test_a_missing_image_is_one_line(client, digits, tmp_path) -> None:
    missing = "serveoff-test-no-such-image:0"
    with pytest.raises(ImageNotFound):
        client.images.get(missing)
    options = ContainerOptions(MEMORY, {"torchserve": missing})
    config = server_config("matched")
    server = ContainerServer(TorchServe([digits], config, tmp_path, free_port_base(5)), options)
    with pytest.raises(ServeoffError, match=f"Docker image {missing} is not here; build it with "
                       "`docker compose build torchserve`"):  # fmt: skip
        server.start()


def test_an_image_for_another_architecture_is_refused_before_anything_starts(
    client, image, built, env, tmp_path
) -> None:
    """TF Serving's image is amd64 only: on arm64 it would run emulated beside a native TorchServe."""
    foreign = foreign_image(client, tmp_path)
    before = {c.id for c in ours(client)}
    artifacts = built["digits-mlp"].root.parent
    args = ["run", "--docker", "--image", f"torchserve={image}", "--image", f"tfserving={foreign}",
            "--server", "torchserve", "--server", "tfserving",
            "--artifacts", str(artifacts), "--out", str(tmp_path / "results")]  # fmt: skip
    done = serveoff(args, env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    arch = client.images.get(foreign).attrs["Architecture"]
    assert lines == [f"serveoff: error: tfserving's image is {arch} but the Docker engine runs "
                     f"{client.version()['Arch']}: it would run emulated and the comparison would be false; "
                     f"measure on an {arch} machine, or natively (serveoff run)"]  # fmt: skip
    assert not (tmp_path / "results").exists() and {c.id for c in ours(client)} == before


def test_run_docker_starts_measures_and_removes_the_containers(client, image, built, env, tmp_path) -> None:
    """`serveoff run --docker` as users run it, with the stand-in image named for both servers."""
    before = {c.id for c in ours(client)}
    artifacts = built["digits-mlp"].root.parent
    mounts = [arg for path in host_mounts() for arg in ("--mount", str(path))]
    args = ["run", "--docker", "--image", f"torchserve={image}", "--image", f"tfserving={image}", *mounts,
            "--server", "torchserve", "--server", "tfserving",
            "--cpus", "1", "--memory", "1g", "--artifacts", str(artifacts), "--concurrency", "2", *QUICK,
            "--out", str(tmp_path), "--run-id", "docker"]  # fmt: skip
    done = serveoff(args, env, prefix=["taskset", "-c", "0"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "docker" / "results.json").read_text())
    for name, server in doc["manifest"]["servers"].items():
        assert server["launcher"] == "docker" and server["memory_limit_bytes"] == MEMORY, name
        assert server["config"]["cpus"] == [1] and server["cost_from"].startswith("docker stats"), name
        assert server["versions"]["image"].startswith(image), name
    points = [p for p in doc["points"] if not p["baseline"]]
    assert len(points) == 4 and all(p["summary"]["requests"] > 0 for p in points)
    assert all(w["server_cpu_s"] > 0 for p in points for w in p["windows"])
    assert (tmp_path / "docker" / "report.html").exists()
    assert {c.id for c in ours(client)} == before, "run --docker left a container behind"
    assert (tmp_path / "docker" / "servers" / "torchserve" / "torchserve.container.log").exists()


def test_probe_docker_runs_the_battery_against_a_server_in_its_container(client, image, built, env,
                                                                         tmp_path) -> None:  # fmt: skip
    """`serveoff probe --docker`: the six probes against TorchServe and the TF Serving double in their
    containers (the stand-in image). TorchServe's rollout reaches the management port published on
    127.0.0.1 for the probe only, and the process failure kills the worker of the new version inside the
    container, which TorchServe restarts; the double's kill hits the server, not Docker's init."""
    before = {c.id for c in ours(client)}
    artifacts = built["digits-mlp"].root.parent
    mounts = [arg for path in host_mounts() for arg in ("--mount", str(path))]
    args = ["probe", "--docker", "--image", f"torchserve={image}", "--image", f"tfserving={image}", *mounts,
            "--server", "torchserve", "--server", "tfserving", "--cpus", "1", "--memory", "1g",
            "--artifacts", str(artifacts), "--probe", "soak", "--probe", "model_update",
            "--probe", "process_failure", "--soak-s", "3", "--failure-s", "6", "--update-s", "4",
            "--out", str(tmp_path), "--run-id", "probe"]  # fmt: skip
    done = serveoff(args, env, prefix=["taskset", "-c", "0"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "probe" / "probes.json").read_text())
    assert doc["settings"]["launcher"] == "docker"
    assert all(r["error"] is None for r in doc["results"]), doc["results"]
    probes = {(r["server"], r["probe"]): r["figures"] for r in doc["results"]}
    assert probes["torchserve", "cold_start"]["first_answer_s"] > 0
    assert probes["torchserve", "soak"]["rss_start_mib"] > 50  # the container's processes, seen from here
    rollout = probes["torchserve", "model_update"]
    assert rollout["supported"] is True and rollout["versions_seen"].endswith("2.0"), rollout
    killed = probes["torchserve", "process_failure"]
    assert "model_service_worker" in killed["killed_command"], killed
    assert killed["recovered"] is True and killed["recovery_s"] > 0, killed
    double = probes["tfserving", "process_failure"]
    assert "tensorflow_model_server" in double["killed_command"], double  # not /sbin/docker-init
    assert double["recovered"] is False and double["failed_requests"] > 0, double
    assert {c.id for c in ours(client)} == before, "probe --docker left a container behind"


def test_the_compose_stack_runs_the_comparison_end_to_end(client, image, tmp_path) -> None:
    """`docker compose up` with the file as it is, every service on the stand-in image, the quick
    bench's own command with shorter windows: build, both servers healthy, bench, report."""
    results = tmp_path / "results"
    results.mkdir()
    quick = resolved()["services"]["bench"]["command"]
    timing = {"--concurrency": "2", "--warmup": "1", "--window": "1", "--max-windows": "2"}
    command = [arg if arg.split("=")[0] not in timing else f"{arg.split('=')[0]}={timing[arg.split('=')[0]]}"
               for arg in quick] + ["--min-windows=2", "--settle-cap=0", "--run-id=compose"]  # fmt: skip
    override = tmp_path / "override.yml"
    override.write_text(compose_override(image, results, command))
    project = f"serveoff-test-{uuid.uuid4().hex[:8]}"
    compose = [docker_compose(), "-p", project, "-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
    env = {"SERVEOFF_SERVER_CPUS": "1", "SERVEOFF_LOADGEN_CPUS": "0", "SERVEOFF_SERVER_MEMORY": "2g"}
    try:
        bench = _start_stack(client, compose, env, project)
        dashboard = _poll(lambda: requests.get("http://127.0.0.1:8089/", timeout=1).status_code, 90)
        assert dashboard == 200, "the locust web UI did not answer on 127.0.0.1:8089"
        assert bench.wait(timeout=300)["StatusCode"] == 0, bench.logs()[-3000:].decode()
        run = results / "compose"
        doc = json.loads((run / "results.json").read_text())
        servers = doc["manifest"]["servers"]
        assert set(servers) == set(SERVERS)
        for name in SERVERS:
            assert servers[name]["launcher"] == "compose"
            assert servers[name]["memory_limit_bytes"] == 2 << 30
            assert servers[name]["config"]["cpus"] == [1]
            assert servers[name]["cost_from"].startswith("docker stats")
            assert client.containers.get(servers[name]["container"]).attrs["HostConfig"]["CpusetCpus"] == "1"
        engine_arch = client.version()["Arch"]
        for name in SERVERS:
            assert servers[name]["versions"]["architecture"] == engine_arch, name
            assert servers[name]["versions"]["image"].startswith(image), name
            assert client.containers.get(servers[name]["container"]).attrs["HostConfig"]["Init"] is True
        assert servers["torchserve"]["versions"]["torchserve"] == "0.12.0"
        assert "serveoff-test" in servers["tfserving"]["versions"]["TensorFlow ModelServer"]
        measured = {p["target"]: p for p in doc["points"]}
        served = {f"{name}:{protocol}" for name in SERVERS for protocol in ("rest", "grpc")}
        assert set(measured) == served | set(runtimes.names())  # every in-process runtime too
        for target in ("torchserve:rest", "tfserving:grpc", "kserve:grpc", "kserve-onnx:rest"):
            point = measured[target]
            assert point["summary"]["requests"] > 0 and not point["summary"]["failed"]
            assert all(0 < w["server_cpu_s"] <= 1.2 * w["duration_s"] for w in point["windows"])  # one CPU
            assert point["peak_rss_mib"] > 10
        assert (run / "report.html").stat().st_size > 100_000
        assert "test double of tfserving:rest" in (run / "report.md").read_text()
        stop = _compose([*compose, "stop", *SERVERS], env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        for name in SERVERS:  # SIGTERM reached the server: it was not killed (137)
            state = client.containers.get(servers[name]["container"]).attrs["State"]
            assert state["ExitCode"] != 137 and not state["OOMKilled"], (name, state)
    finally:
        down = _compose([*compose, "down", "-v", "--remove-orphans"], env, timeout=120)
        assert down.returncode == 0, down.stderr
    assert not client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"SERVEOFF_MODEL": "no-such-model"}, "unknown model 'no-such-model'"),
        ({"SERVEOFF_SERVER_CPUS": "0-99"}, "names CPUs this machine lacks"),
        ({"SERVEOFF_SERVER_MEMORY": "lots"}, "memory limit 'lots' is malformed"),
        ({"SERVEOFF_LOADGEN_CPUS": "0-99"}, "the load generator's CPU list '0-99' names CPUs"),
    ],
)
def test_a_bad_setting_stops_the_stack_before_anything_is_built(client, image, tmp_path, env, line) -> None:
    override = tmp_path / "override.yml"
    override.write_text(compose_override(image, tmp_path, ["true"]))
    project = f"serveoff-test-{uuid.uuid4().hex[:8]}"
    compose = [docker_compose(), "-p", project, "-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
    try:
        started = time.monotonic()
        up = _compose([*compose, "up", "--exit-code-from", "build", "build"], env, timeout=120)
        logs = _service(client, project, "build").logs().decode()
    finally:
        _compose([*compose, "down", "-v"], env, timeout=120)
    assert up.returncode != 0
    errors = [row for row in logs.splitlines() if row.startswith("serveoff: error:")]
    assert len(errors) == 1 and line in errors[0], logs
    assert "training" not in logs and time.monotonic() - started < 60  # it failed before building


def test_the_stack_with_the_official_images(client) -> None:
    """The smoke test of the real thing: where the server images were built (`docker compose build`)."""
    needed = [server_class(name).default_image for name in ("torchserve", "tfserving")] + ["serveoff:0.1.0"]
    missing = []
    for name in needed:
        try:
            client.images.get(name)
        except ImageNotFound:
            missing.append(name)
    if missing:
        pytest.skip(f"images {', '.join(missing)} are not here (no registry is reachable to build them)")
    project = f"serveoff-test-{uuid.uuid4().hex[:8]}"
    compose = [docker_compose(), "-p", project, "-f", str(ROOT / "docker-compose.yml")]
    try:
        bench = _start_stack(client, compose, {}, project)
        assert bench.wait(timeout=1800)["StatusCode"] == 0, bench.logs()[-3000:].decode()
    finally:
        _compose([*compose, "down", "-v"], {}, timeout=120)


def _start_stack(client, compose: list[str], env: dict[str, str], project: str):
    """`up -d` (it returns once the servers are healthy and the bench started): the bench's container."""
    up = _compose([*compose, "up", "-d"], env, timeout=600)
    assert up.returncode == 0, up.stderr
    return _service(client, project, "bench")


def _service(client, project: str, service: str):
    """The container of a compose service (found by compose's labels: v1 and v2 name them differently)."""
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    (container,) = client.containers.list(all=True, filters={"label": labels})
    return container


def _compose(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SERVEOFF_", "COMPOSE_"))}
    return subprocess.run(argv, cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=timeout)


def _poll(probe, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return probe()
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
