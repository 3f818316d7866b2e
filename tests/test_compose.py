"""The Compose path on a real Docker engine, through the real `inv`, in a copy of the project.

Skipped, with the reason, where no engine answers; in CI (CI=true) that is a failure instead,
because .ci/run provisions an engine.
"""

import functools
import os
import re
import signal
import subprocess
import urllib.request

import psycopg2
import pytest
from project_copy import (
    TIMEOUT,
    check_the_warm_test_server_is_used_and_left_running,
    clean_environ,
    fetch_when_up,
    free_port,
    make_copy,
    run_inv,
    start_inv,
    wait_for_marker,
)

import tasks

if not tasks.docker_engine_answers():
    if os.environ.get("CI") == "true":
        pytest.fail("CI must have a Docker engine (.ci/run runs provision)", pytrace=False)
    pytest.skip("no Docker engine answers (`docker version`)", allow_module_level=True)


pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project; every container, network and volume of its projects removed after."""
    root = make_copy(tmp_path_factory.mktemp(f"compose{os.getpid()}-"))
    yield root
    for label in project_labels(compose_prefix(root)):
        remove_everything_of(label)


def compose_prefix(root) -> str:
    """The Compose project names of the copy start with this (its folder's name)."""
    return re.sub(r"[^a-z0-9_-]+", "-", root.name.lower()).strip("-_")


def project_labels(prefix: str) -> set[str]:
    """Compose project names starting with `prefix` that still own a container, network or volume."""
    found = set()
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        listing = subprocess.run(
            ["docker", *kind, "--format", '{{.Label "com.docker.compose.project"}}'],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found |= {name for name in listing.split() if name.startswith(prefix)}
    return found


def remove_everything_of(project_name: str) -> None:
    label = f"label=com.docker.compose.project={project_name}"
    for kind, remove in ((["ps", "-aq"], ["rm", "-fv"]), (["network", "ls", "-q"], ["network", "rm"]), (["volume", "ls", "-q"], ["volume", "rm", "-f"])):  # fmt: skip
        ids = subprocess.run(
            ["docker", *kind, "--filter", label], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["docker", *remove, *ids], capture_output=True)


def inv(project, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_inv(project, "compose", *args, **env)


@pytest.fixture
def leaves_no_test_project(project):
    """Asserts that `inv test` runs left no container, network or volume of a throwaway project."""
    yield
    assert project_labels(f"{compose_prefix(project)}-testing-") == set()


@pytest.fixture
def ports():
    """Free host ports for the copy's development db and web, so the developer's are not touched."""
    return {"POSTGRES_PORT": str(free_port()), "WEB_PORT": str(free_port())}


# --------------------------------------------------------------------------- the compose files


@pytest.mark.parametrize("env", ["development", "testing", "production"])
def test_compose_config_is_clean_for_every_environment(project, env):
    result = inv(project, "compose", "--", "config", "--quiet", APPLICATION_CONFIG=env, SECRET_KEY="d41d8cd98f00b204e9800998ecf8427e", POSTGRES_PASSWORD="pw")  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_production_refuses_to_start_without_its_secrets(project):
    environ = {
        k: v
        for k, v in clean_environ("compose").items()
        if k not in ("SECRET_KEY", "POSTGRES_PASSWORD")
    }
    result = subprocess.run(
        ["docker", "compose", "-p", "refuse", "-f", "compose/production.yml", "up", "--no-start"],
        cwd=project, env=environ, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr or "set SECRET_KEY" in result.stderr
    assert project_labels("refuse") == set()


# --------------------------------------------------------------------------- inv test on compose


def test_a_green_run_on_compose(project, leaves_no_test_project):
    result = inv(project, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "throwaway testing PostgreSQL (compose" in result.stderr


def test_a_red_run_on_compose_fails_and_cleans_up(project, leaves_no_test_project):
    result = inv(project, "test", SAMPLE_FAIL="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout


def test_an_interrupted_run_on_compose_removes_its_project(
    project, tmp_path, leaves_no_test_project
):
    marker = tmp_path / "started"
    run = start_inv(project, "compose", "test", SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    assert project_labels(f"{compose_prefix(project)}-testing-"), "its db should be running now"
    run.send_signal(signal.SIGINT)
    output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode == 2, output


def test_a_warm_compose_test_server_is_used_and_left_running(project, leaves_no_test_project):
    check_the_warm_test_server_is_used_and_left_running(functools.partial(inv, project))
    assert project_labels(f"{compose_prefix(project)}-testing") == set()


def test_auto_says_it_chose_compose(project):
    result = inv(project, "db.status", DB_SERVER="auto")
    assert "compose, chosen by DB_SERVER=auto: a Docker engine answered" in result.stdout


# --------------------------------------------------------------------------- the development db


def test_development_data_survives_down_and_up(project, ports):
    try:
        assert inv(project, "db.init", **ports).returncode == 0
        dsn = f"host=127.0.0.1 port={ports['POSTGRES_PORT']} user=postgres password=postgres dbname=application"
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("INSERT INTO users (email) VALUES ('kept@example.com')")
        connection.close()
        assert "stopped" in inv(project, "db.down", **ports).stderr
        assert inv(project, "db.up", **ports).returncode == 0
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT email FROM users")
            assert cursor.fetchall() == [("kept@example.com",)]
        connection.close()

        logs = inv(project, "compose", "--", "logs", "db", **ports)
        assert "database system is ready to accept connections" in logs.stdout

        quoted = inv(project, "compose", "--", "exec", "db", "psql", "-U", "postgres", "-tA", "-c", "select 'two words'", **ports)  # fmt: skip
        assert quoted.stdout.strip() == "two words", quoted.stderr
    finally:
        inv(project, "compose", "--", "down", "--volumes", **ports)


def test_the_web_service_builds_answers_and_runs_as_the_host_user(project, ports):
    try:
        up = inv(project, "compose", "--", "up", "--detach", "--build", "web", **ports)
        assert up.returncode == 0, up.stderr
        body = fetch_when_up(f"http://127.0.0.1:{ports['WEB_PORT']}/")
        assert body == b"Hello, World!"
        uid = inv(project, "compose", "--", "exec", "web", "id", "-u", **ports)
        assert uid.stdout.strip() == str(os.getuid())
    finally:
        inv(project, "compose", "--", "down", "--volumes", **ports)


def test_the_production_stack_starts_with_its_secrets(project, ports):
    secrets = {
        "APPLICATION_CONFIG": "production",
        "SECRET_KEY": "d41d8cd98f00b204e9800998ecf8427e",
        "POSTGRES_PASSWORD": "pw",
    }
    try:
        up = inv(project, "compose", "--", "up", "--detach", "--build", **ports, **secrets)
        assert up.returncode == 0, up.stderr
        body = fetch_when_up(f"http://127.0.0.1:{ports['WEB_PORT']}/")
        assert body == b"Hello, World!"
        request = urllib.request.urlopen(f"http://127.0.0.1:{ports['WEB_PORT']}/", timeout=5)
        assert "gunicorn" in request.headers.get("Server", "")
    finally:
        inv(project, "compose", "--", "down", "--volumes", **ports, **secrets)


def test_a_throwaway_project_whose_inv_was_killed_is_removed_by_the_next_run(project):
    """SIGKILL leaves no chance to clean up: the next `inv test` removes what is left."""
    dead_pid = 2**22 + 1  # above the largest pid Linux hands out
    abandoned = f"{compose_prefix(project)}-testing-{dead_pid}-dead"
    subprocess.run(
        ["docker", "create", "--label", f"com.docker.compose.project={abandoned}", "postgres:18"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert project_labels(abandoned) == {abandoned}
    assert inv(project, "test", "--pattern", "passing").returncode == 0
    assert project_labels(abandoned) == set()
