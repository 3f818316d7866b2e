"""The production stack's proxy (compose/nginx.conf) on a real Docker engine."""

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from project_copy import free_port, make_copy, run_inv, skip_module_without_docker_engine
from swarm_engine import alone_with_the_engine_s_networks, dangling_images, remove_images

from steps import compose

skip_module_without_docker_engine()

# gunicorn small for these tests, 1 worker x 20 connections; three times as many slow
# clients hold every one of its connections.
WORKERS, CONNECTIONS = 1, 20
SLOW_CLIENTS = 3 * WORKERS * CONNECTIONS
# nginx's client_body_timeout (compose/nginx.conf).
BODY_TIMEOUT = 10
# A POST's headers, and none of the body they announce.
STALLED_UPLOAD = (
    b"POST /users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b"Content-Length: 10000\r\n\r\n"
)


class Stack(NamedTuple):
    project: Path
    env: dict[str, str]
    url: str  # the proxy's, the one published port

    def compose(self, *args: str) -> subprocess.CompletedProcess:
        return run_inv(self.project, "compose", "compose", "--", *args, **self.env)

    def address_of(self, service: str) -> str:
        """The service's container's address on the stack's network (a Linux host reaches it)."""
        container = self.compose("ps", "--quiet", service).stdout.strip()
        inspect = ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]  # fmt: skip
        return subprocess.run(inspect, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """The copy's production stack, gunicorn at 1 worker x 20 connections; removed after."""
    with alone_with_the_engine_s_networks(tmp_path_factory):
        project = make_copy(tmp_path_factory.mktemp(f"proxy{os.getpid()}-"))
        prefix = compose.project_name(project.resolve())
        env = {
            "APPLICATION_CONFIG": "production",
            "SECRET_KEY": uuid.uuid4().hex,
            "POSTGRES_PASSWORD": uuid.uuid4().hex,
            "WEB_PORT": str(free_port()),
            "WEB_CONCURRENCY": str(WORKERS),
            "GUNICORN_CONNECTIONS": str(CONNECTIONS),
        }
        stack = Stack(project, env, f"http://127.0.0.1:{env['WEB_PORT']}")
        dangling = set(dangling_images())
        try:
            up = stack.compose("up", "--detach", "--build", "--wait")
            assert up.returncode == 0, up.stderr
            yield stack
        finally:
            down = stack.compose("down", "--volumes")
            remove_images(f"{prefix}-web", prefix)
        assert down.returncode == 0, down.stderr
        assert set(dangling_images()) <= dangling


@contextlib.contextmanager
def stalled_uploads(host: str, port: int) -> Iterator[list[socket.socket]]:
    """SLOW_CLIENTS connections to host:port, each with STALLED_UPLOAD sent; closed after."""
    held = []
    try:
        for _ in range(SLOW_CLIENTS):
            connection = socket.create_connection((host, port), timeout=5)
            connection.sendall(STALLED_UPLOAD)
            held.append(connection)
        time.sleep(0.5)  # each one accepted, its headers read
        yield held
    finally:
        for connection in held:
            connection.close()


def health_seconds(url: str, timeout: float = 3) -> float | None:
    """Seconds GET /health took to answer 200, or None when it did not within `timeout`."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return time.monotonic() - started if response.status == 200 else None
    except OSError:
        return None


def seconds_until_closed(connections: list[socket.socket], limit: float) -> list[float | None]:
    """For each connection, the seconds until the server closed it (None: open after `limit`)."""
    started, closed = time.monotonic(), []
    for connection in connections:
        connection.settimeout(max(0.01, started + limit - time.monotonic()))
        try:
            while connection.recv(4096):
                pass
        except TimeoutError:
            closed.append(None)
            continue
        except OSError:  # reset: nginx's reset_timedout_connection
            pass
        closed.append(time.monotonic() - started)
    return closed


def call(url: str, method: str, path: str, body: bytes | None = None, **headers: str):
    """(status, headers, the body as JSON) of a request."""
    request = urllib.request.Request(f"{url}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.load(error)


def test_slow_clients_beyond_gunicorns_capacity_do_not_stall_the_service(stack):
    with stalled_uploads("127.0.0.1", int(stack.env["WEB_PORT"])) as held:
        seconds = [health_seconds(stack.url) for _ in range(5)]
        assert all(s is not None and s < 1 for s in seconds), (
            f"/health with {SLOW_CLIENTS} stalled uploads held by the proxy: {seconds} s"
        )
        # nginx gives up on them after client_body_timeout; gunicorn alone never does.
        closed = seconds_until_closed(held, BODY_TIMEOUT + 5)
        assert None not in closed, f"{closed.count(None)} stalled uploads still open"


def test_without_the_proxy_the_same_clients_stall_gunicorn(stack):
    """The control: sent to gunicorn itself, the same clients leave /health unanswered."""
    web = f"http://{stack.address_of('web')}:8000"
    assert health_seconds(web) is not None, f"gunicorn does not answer at {web} before the test"
    with stalled_uploads(stack.address_of("web"), 8000):
        assert health_seconds(web) is None
    assert health_seconds(web, timeout=10) is not None


def test_a_body_over_the_proxy_s_limit_is_a_json_413_and_the_app_s_own_limit_too(stack):
    json_type = {"Content-Type": "application/json"}
    status, _, body = call(stack.url, "POST", "/users", b" " * (1024 * 1024 + 1), **json_type)
    assert (status, body["error"]["code"]) == (413, "request_entity_too_large")
    assert "proxy's limit of 1 MiB" in body["error"]["message"]
    # Under nginx's limit, over the app's (16 KiB): the app's answer, passed through.
    status, _, body = call(stack.url, "POST", "/users", b" " * (32 * 1024), **json_type)
    assert (status, body["error"]["code"]) == (413, "request_entity_too_large")
    assert "proxy" not in body["error"]["message"]


def test_a_malformed_request_is_nginx_s_json_400_without_its_version(stack):
    with socket.create_connection(("127.0.0.1", int(stack.env["WEB_PORT"])), timeout=5) as raw:
        raw.sendall(b"NOT HTTP\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 ")
    assert "\r\nServer: nginx\r\n" in head  # server_tokens off: no version
    assert "\r\nContent-Type: application/json\r\n" in head
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_the_app_logs_the_client_nginx_saw_not_nginx_nor_what_the_client_claims(stack):
    marker = uuid.uuid4().hex
    status, headers, _ = call(stack.url, "GET", f"/health?{marker}", **{"X-Forwarded-For": "198.51.100.9"})  # fmt: skip
    assert (status, headers["Server"]) == (200, "nginx")
    proxy_log = stack.compose("logs", "--no-log-prefix", "proxy").stdout
    web_log = stack.compose("logs", "--no-log-prefix", "web").stdout
    seen_by_nginx = [line.split()[0] for line in proxy_log.splitlines() if marker in line]
    seen_by_app = [line.split()[0] for line in web_log.splitlines() if marker in line]
    assert len(seen_by_nginx) == 1 and seen_by_app == seen_by_nginx, proxy_log + web_log
    assert seen_by_app[0] not in ("198.51.100.9", stack.address_of("proxy"))


def test_the_app_down_is_nginx_s_json_502(stack):
    """With web stopped: a JSON 504 while nginx's DNS cache holds it (2 s), then a JSON 502."""
    assert stack.compose("stop", "web").returncode == 0
    try:
        answers, deadline = [], time.monotonic() + 10
        while not answers or answers[-1] != (502, "bad_gateway"):
            assert time.monotonic() < deadline, answers
            status, _, body = call(stack.url, "GET", "/health")
            answers.append((status, body["error"]["code"]))
        assert set(answers) <= {(502, "bad_gateway"), (504, "gateway_timeout")}
    finally:
        up = stack.compose("up", "--detach", "--wait", "web")
    assert up.returncode == 0, up.stderr
    assert health_seconds(stack.url) is not None
