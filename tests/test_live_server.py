"""The app under gunicorn, as `inv serve` runs it, against the test database: real HTTP,
real concurrency, committed rows (each test removes its own)."""

import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

import tasks
from app.extensions import db

CLIENTS = 50


@pytest.fixture(scope="module")
def live_server(app):
    """gunicorn serving the app on a free port, stopped after the module."""
    env = tasks.Env("testing", dict(os.environ))
    port = tasks.free_port()
    with tasks.background(tasks.gunicorn_command(env, port)) as server:
        url = f"http://127.0.0.1:{port}"
        tasks.wait_for_http(f"{url}/health", server)
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
