"""The production stack on Docker Swarm through the real `inv stack.*`, in a copy of the project."""

import os
import secrets
import subprocess
import time
import uuid

import pytest
from project_copy import (
    INV,
    TIMEOUT,
    clean_environ,
    free_port,
    make_copy,
    run_inv,
    skip_module_without_docker_engine,
)
from swarm_engine import (
    ROUTING_MESH,
    alone_with_the_engine_s_networks,
    dangling_images,
    remove_images,
    run_client,
    swarm_manager,
    swarm_state,
)

from steps import compose, swarm

skip_module_without_docker_engine()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_copy(tmp_path_factory.mktemp(f"swarm{os.getpid()}-"))


@pytest.fixture
def production(project):
    """The copy's production settings: its own image name, a free port, real secrets."""
    return {
        "APPLICATION_CONFIG": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "POSTGRES_PASSWORD": secrets.token_hex(8),
        "WEB_IMAGE": f"{project.name.lower()}-web:latest",
        "WEB_PORT": str(free_port()),
    }


def inv(project, *args, **env):
    return run_inv(project, "compose", *args, **env)


def test_not_a_swarm_manager_is_one_line(project, production):
    if swarm_state() == "active":
        pytest.skip("this engine is a swarm manager already")
    result = inv(project, "stack.deploy", **production)
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    assert "not a swarm manager: `docker swarm init`" in result.stderr


def test_a_stack_refuses_to_deploy_without_its_secrets(project, production):
    result = inv(project, "stack.deploy", **{**production, "SECRET_KEY": ""})
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    assert "missing variable(s) SECRET_KEY" in result.stderr


def test_three_replicas_serve_the_api_and_migrated_once(project, production, tmp_path_factory):
    stack = f"{compose.project_name(project.resolve())}-production-swarm"
    repository = production["WEB_IMAGE"].split(":")[0]
    dangling_before = set(dangling_images())
    with alone_with_the_engine_s_networks(tmp_path_factory), swarm_manager():
        try:
            absent = inv(project, "stack.status", **production)
            assert (absent.returncode, absent.stderr.count("\n")) == (1, 1), absent.stderr
            assert f"no stack {stack}" in absent.stderr
            deploy = inv(project, "stack.deploy", "--replicas", "3", **production)
            assert deploy.returncode == 0, deploy.stdout + deploy.stderr
            last = deploy.stderr.strip().splitlines()[-1]
            port = production["WEB_PORT"]
            if ROUTING_MESH:
                assert f"is up: http://127.0.0.1:{port}/" in last
            else:  # the line says so, and where the replicas do answer
                assert f"nothing answers on port {port} here" in last
                assert f"{stack}_default as http://tasks.proxy/" in last

            services = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}", "--format", "{{.Name}} {{.Replicas}}")  # fmt: skip
            assert sorted(services.split("\n")) == [f"{stack}_db 1/1", f"{stack}_proxy 1/1", f"{stack}_web 3/3"]  # fmt: skip
            status = inv(project, "stack.status", **production)
            assert status.returncode == 0 and f"{stack}_web" in status.stdout

            logs = service_logs(f"{stack}_web")
            assert logs.count("Running upgrade  -> 0001") == 1, logs
            assert logs.count("is at head") == 3, logs

            # POST, then GET the same row, through the proxy (its container, without IPVS).
            image = docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", f"{stack}_web")  # fmt: skip
            calls = run_client(f"{stack}_default", image, "http://tasks.proxy", requests=6)
            assert calls == {"counts": {"POST 201": 6, "GET 200": 6}, "failures": []}
            health = run_client_health(f"{stack}_default", image)
            assert health == ["200"] * 3
            # The proxy spreads requests over the replicas at random: 30 miss one of the
            # three about once in 60,000 runs.
            assert replicas_serving(f"{stack}_default", image, f"{stack}_web", 30) == 3
            status = inv(project, "db.status", **production)
            assert f"running in the Swarm stack {stack}" in status.stdout, status.stderr
            shell = subprocess.run(
                [*INV, "db.shell"], input="SELECT count(*) FROM users;\n", cwd=project,
                env=clean_environ("compose", **production), capture_output=True, text=True,
                timeout=TIMEOUT,
            )  # fmt: skip
            assert " 6\n" in shell.stdout, shell.stdout + shell.stderr
            if ROUTING_MESH:
                mesh = run_client(
                    "host", image, f"http://127.0.0.1:{production['WEB_PORT']}", requests=3
                )
                assert mesh["failures"] == []
        finally:
            removed = inv(project, "stack.rm", "--volumes", "--yes", **production)
            remove_images(repository, project.name.lower())
        assert removed.returncode == 0, removed.stderr
        assert f"deleted the volume(s) {stack}_db-data" in removed.stderr
        assert swarm.stack_leftovers(stack).strip() == ""
        assert docker("volume", "ls", "--quiet", "--filter", f"name={stack}") == ""
    assert docker("image", "ls", "--quiet", repository) == ""
    assert set(dangling_images()) <= dangling_before


def run_client_health(network: str, image: str) -> list[str]:
    """GET /health on every replica, by its own address."""
    script = (
        "import socket, urllib.request\n"
        "ips = sorted({a[4][0] for a in socket.getaddrinfo('tasks.web', 8000, proto=socket.IPPROTO_TCP)})\n"
        "for ip in ips: print(urllib.request.urlopen(f'http://{ip}:8000/health', timeout=5).status)\n"
    )
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", network, "--entrypoint", "python", image, "-c", script],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def replicas_serving(network: str, image: str, service: str, requests: int) -> int:
    """How many of the service's replicas served `requests` GET /health through the proxy."""
    marker = uuid.uuid4().hex
    script = (
        "import urllib.request\n"
        f"for _ in range({requests}): urllib.request.urlopen('http://tasks.proxy/health?{marker}', timeout=5)\n"
    )
    subprocess.run(
        ["docker", "run", "--rm", "--network", network, "--entrypoint", "python", image, "-c", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while len(lines := [line for line in service_logs(service, raw=False).splitlines() if marker in line]) < requests:  # fmt: skip
        assert time.monotonic() < deadline, lines
        time.sleep(0.5)
    return len({line.split()[0] for line in lines})  # the task's name, e.g. <service>.2.<id>@<node>


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def service_logs(service: str, raw: bool = True) -> str:
    """Every replica's output, raw (the entry point and alembic write to stderr)."""
    result = subprocess.run(
        ["docker", "service", "logs", *(["--raw"] if raw else []), service],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.stdout + result.stderr
