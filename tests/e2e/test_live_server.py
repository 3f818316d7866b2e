"""The app under gunicorn, as `inv serve` runs it, on the test database: real HTTP and races."""

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from app.extensions import db
from steps import app_commands, commands, postgres

CLIENTS = 50


@contextlib.contextmanager
def gunicorn(log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn as `inv serve` runs it (gunicorn.conf.py), on a free port, its output in `log`."""
    port = postgres.free_port()
    with commands.background(app_commands.gunicorn_command(port), log) as server:
        url = f"http://127.0.0.1:{port}"
        app_commands.wait_for_http(f"{url}/health", server)
        yield url, server


@pytest.fixture(scope="module")
def live_server(app, tmp_path_factory):
    """gunicorn serving the app on a free port, stopped after the module."""
    with gunicorn(tmp_path_factory.mktemp("gunicorn") / "server.log") as (url, _):
        yield url


def post_user(url: str, email: str) -> int:
    body = json.dumps({"email": email}).encode()
    request = urllib.request.Request(
        f"{url}/users", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def race_email(app):
    """A fresh email; its rows are deleted after the test (gunicorn commits for real)."""
    email = f"race-{uuid.uuid4().hex}@example.com"
    yield email
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE lower(email) = :e"), {"e": email})


def test_fifty_concurrent_posts_of_one_email_make_exactly_one_user(app, live_server, race_email):
    # The same address in different cases: uniqueness ignores case, under a real race too.
    spellings = [race_email.upper() if n % 2 else race_email for n in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)

    def post(email: str) -> int:
        start.wait()
        return post_user(live_server, email)

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = list(pool.map(post, spellings))

    assert sorted(statuses) == [201] + [409] * (CLIENTS - 1)
    with app.app_context(), db.engine.connect() as connection:
        rows = connection.scalar(
            text("SELECT count(*) FROM users WHERE lower(email) = :e"), {"e": race_email}
        )
    assert rows == 1


def test_the_live_server_answers_health_and_json_errors(live_server):
    with urllib.request.urlopen(f"{live_server}/health", timeout=10) as response:
        assert json.load(response) == {"status": "ok", "database": "ok"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{live_server}/users/999999999", timeout=10)
    assert missing.value.code == 404
    assert json.load(missing.value)["error"]["code"] == "not_found"


def test_sigterm_lets_a_request_in_flight_finish(app, race_email, tmp_path, monkeypatch):
    """SIGTERM (docker stop, a rolling update): a request being received is answered; exit 0."""
    monkeypatch.setenv("WEB_CONCURRENCY", "1")  # the request's worker; a second would only cost
    log = tmp_path / "server.log"
    body = json.dumps({"email": race_email}).encode()
    head = (
        f"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with gunicorn(log) as (url, server):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(head + body[:5])
            time.sleep(0.5)  # the worker has read the headers and waits for the body
            server.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # gunicorn is shutting down now
            client.sendall(body[5:])
            answer = b"".join(iter(lambda: client.recv(65536), b""))
        assert server.wait(timeout=30) == 0, log.read_text()
    assert answer.startswith(b"HTTP/1.1 201"), answer
    with app.app_context(), db.engine.connect() as connection:
        stored = connection.scalar(
            text("SELECT email FROM users WHERE email = :e"), {"e": race_email}
        )
    assert stored == race_email
    assert '"POST /users HTTP/1.1" 201' in log.read_text()  # the access log, on stdout


SLOW_CLIENTS = 48  # several per thread of a threaded gunicorn (2 workers x 4 threads)


@contextlib.contextmanager
def slow_clients(url: str, count: int, trickle: bool) -> Iterator[list[socket.socket]]:
    """Clients that send their headers, then a byte of the body now and then (trickle) or none."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets = []
    for _ in range(count):
        client = socket.create_connection((host, int(port)), timeout=5)
        client.sendall(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        sockets.append(client)

    def send_a_byte_now_and_then() -> None:
        while not stop.wait(1):
            for client in sockets:
                with contextlib.suppress(OSError):
                    client.send(b" ")

    thread = threading.Thread(target=send_a_byte_now_and_then, daemon=True)
    if trickle:
        thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for client in sockets:
            client.close()


@pytest.mark.parametrize("trickle", [True, False], ids=["trickling", "silent"])
def test_slow_clients_do_not_stall_the_service(live_server, race_email, trickle):
    with slow_clients(live_server, SLOW_CLIENTS, trickle):
        time.sleep(2)  # every slow client has been accepted and is trickling
        started = time.monotonic()
        with urllib.request.urlopen(f"{live_server}/health", timeout=10) as response:
            health = response.status
        status = post_user(live_server, race_email)
        elapsed = time.monotonic() - started
    assert (health, status) == (200, 201)
    assert elapsed < 3, f"{SLOW_CLIENTS} slow clients held the service for {elapsed:.1f} s"


BROWSER = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


@pytest.mark.skipif(not BROWSER, reason="no headless browser here: apt-get install chromium")
def test_the_docs_page_renders_offline_in_a_real_browser(live_server, tmp_path):
    """A real browser, which may reach nothing but this machine: /docs must bring its own files."""
    page = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--virtual-time-budget=15000", "--dump-dom", f"{live_server}/docs"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    dom = page.stdout
    assert "swagger-ui" in dom, page.stderr[-2000:]
    for operation in ("Create a user", "A page of users in id order", "One user", "Delete a user"):
        assert operation in dom, f"{operation!r} not rendered"
    html = urllib.request.urlopen(f"{live_server}/docs").read().decode()
    assert re.findall(r'(?:src|href)="(?!/)[^"]*"', html) == [], (
        "the page loads files from elsewhere"
    )
