"""The development tasks and the refusals, as a user runs them, in a copy of the project."""

import json
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest
from impostor import Impostor
from project_copy import (
    TIMEOUT,
    dev_password,
    fetch_when_up,
    free_port,
    local_inv,
    local_socket,
    module_copy,
    on_a_terminal,
    start_inv,
)
from werkzeug.debug import get_pin_and_cookie_name

from steps import postgres
from steps.servers import local

project = module_copy("dev_tasks")
inv = local_inv


@pytest.fixture
def dev_port(project):
    """A free port for the copy's development server, so the developer's own is never touched."""
    return str(free_port())


BUG_VIEW = """

@main.get("/bug")
def bug():
    raise RuntimeError("a bug in a view")
"""


@pytest.fixture
def app_with_a_bug(project):
    """The copy's app with GET /bug raising, as a bug in a view does (removed after)."""
    views = project / "app" / "main.py"
    original = views.read_text()
    views.write_text(original + BUG_VIEW)
    yield "/bug"
    views.write_text(original)


def fetch_error(url: str) -> tuple[int, str, bytes]:
    """The status, Content-Type and body of the error `url` answers."""
    try:
        urllib.request.urlopen(url, timeout=30).close()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()
    pytest.fail(f"{url} answered without an error")


def status_of(url: str) -> int | None:
    """The status `url` answers, None while nothing answers there (a server reloading)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


# --------------------------------------------------------------------------- the development server


def test_db_up_twice_is_harmless_and_down_twice_says_so(project, dev_port):
    first = inv(project, "db.up", POSTGRES_PORT=dev_port)
    second = inv(project, "db.up", POSTGRES_PORT=dev_port)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    socket = local_socket(project)
    assert f"on {socket}:{dev_port} is running" in second.stderr
    assert "stopped" in inv(project, "db.down").stderr
    assert not Path(socket).exists(), "db.down left the socket's folder in /tmp"
    again = inv(project, "db.down")
    assert again.returncode == 0
    assert "not running: nothing to stop" in again.stderr


def test_development_data_survives_a_restart(project, dev_port):
    def dsn() -> str:  # the socket's folder is new at each start
        return f"host={local_socket(project)} port={dev_port} user=postgres password={dev_password(project)} dbname=application"

    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
    with psycopg2.connect(dsn()) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, email_folded) VALUES ('kept@example.com', 'kept@example.com')"
        )
    connection.close()
    assert inv(project, "db.down").returncode == 0
    assert inv(project, "db.up", POSTGRES_PORT=dev_port).returncode == 0
    with psycopg2.connect(dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT email FROM users")
        assert cursor.fetchall() == [("kept@example.com",)]
    connection.close()
    inv(project, "db.down")


def test_inv_dev_reloads_the_app_when_a_file_is_saved(project, dev_port):
    web_port = free_port()
    views = project / "app" / "main.py"
    original = views.read_text()
    run = start_inv(project, "local", "dev", POSTGRES_PORT=dev_port, FLASK_RUN_PORT=str(web_port))
    try:
        assert fetch_when_up(f"http://127.0.0.1:{web_port}/", lambda: run.poll() is None)
        views.write_text(original + BUG_VIEW)  # a new route, as a user saves one
        deadline = time.monotonic() + TIMEOUT
        # 404 until the app is reloaded with the new view, whose own bug is then a 500.
        while status_of(f"http://127.0.0.1:{web_port}/bug") != 500:
            assert time.monotonic() < deadline, "the app was not reloaded"
            time.sleep(0.2)
    finally:
        views.write_text(original)
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=TIMEOUT)[0]
        inv(project, "db.down")
    assert "Detected change in" in output


def test_inv_dev_serves_the_app_and_ctrl_c_keeps_the_database(
    project, dev_port, app_with_a_bug, monkeypatch
):
    """A bug shows Werkzeug's debugger page and its traceback; the PIN is not Werkzeug's default."""
    monkeypatch.delenv("WERKZEUG_DEBUG_PIN", raising=False)
    # Werkzeug's default comes from what any local user can read: user, paths, MAC, machine id.
    flask_app = type("Flask", (), {"__module__": "flask.app"})()  # as `flask run` names its app
    derivable = get_pin_and_cookie_name(flask_app)[0]
    web_port = free_port()
    run = start_inv(project, "local", "dev", POSTGRES_PORT=dev_port, FLASK_RUN_PORT=str(web_port))
    try:
        body = fetch_when_up(f"http://127.0.0.1:{web_port}/", lambda: run.poll() is None)
        assert body == b"Hello, World!"
        status, content_type, page = fetch_error(f"http://127.0.0.1:{web_port}{app_with_a_bug}")
        second = inv(project, "dev", POSTGRES_PORT=dev_port, FLASK_RUN_PORT=str(web_port))
    finally:
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode in (0, 130), output
    assert (status, content_type.split(";")[0]) == (500, "text/html"), page
    for marker in (b"Traceback", b"RuntimeError: a bug in a view", b"?__debugger__=yes"):
        assert marker in page
    assert b"EVALEX = true" in page  # its console, which the PIN unlocks
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: a bug in a view" in output
    shown = re.search(r"the debugger's PIN for this run: (\S+)", output).group(1)
    assert f"Debugger PIN: {shown}" in output  # Werkzeug's own line: the PIN it checks
    assert shown != derivable
    assert "is in use by this project's own app server" in second.stderr
    assert "change FLASK_RUN_PORT in your environment" in second.stderr
    status = inv(project, "db.status")
    assert f"running on {local_socket(project)}:{dev_port}" in status.stdout
    assert f"password in {local.password_file('development', project)}" in status.stdout
    inv(project, "db.down")


def test_inv_flask_reaches_the_database_and_ctrl_c_in_its_shell_cancels_the_line(project, dev_port):
    current = inv(project, "flask", "--", "db", "current", POSTGRES_PORT=dev_port)
    assert current.returncode == 0, current.stderr
    query = b'print("answer:", db.session.execute(db.text("SELECT 6 * 7")).scalar())\n'

    def ctrl_c_as_a_person_types_it(output: str) -> bytes:
        # Not at the prompt's instant: readline sees a signal only when it interrupts its select().
        time.sleep(0.5)
        return b"\x03"

    status, output = on_a_terminal(
        project, ["flask", "--", "shell"],
        [(">>> ", b"from app.extensions import db\n(1 +\n"), ("... ", ctrl_c_as_a_person_types_it),
         ("KeyboardInterrupt", query), ("answer: 42", b"exit()\n")],
        POSTGRES_PORT=dev_port,
    )  # fmt: skip
    inv(project, "db.down")
    assert status == 0, output
    assert "answer: 42" in output


def test_downgrade_names_the_migrations_it_goes_from_and_back_to(project, dev_port):
    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
    result = inv(project, "db.downgrade", POSTGRES_PORT=dev_port)
    inv(project, "db.down")
    files = sorted(p.stem for p in (project / "migrations" / "versions").glob("[0-9]*.py"))
    assert result.returncode == 1
    assert f"from {files[-1]} back to {files[-2]}?" in result.stderr


def test_db_migrate_writes_a_migration_for_a_model_change(project, dev_port):
    models = project / "app" / "models.py"
    original = models.read_text()
    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0  # at head: the base
    models.write_text(original + "\n    name = db.Column(db.String(80))\n")
    try:
        result = inv(project, "db.migrate", "-m", "add user name", POSTGRES_PORT=dev_port)
        assert result.returncode == 0, result.stderr
        path = project / result.stdout.strip().splitlines()[-1]
        assert path.name.endswith("_add_user_name.py")
        assert "add_column(sa.Column('name'" in path.read_text().replace('"', "'")
        path.unlink()
    finally:
        models.write_text(original)
        inv(project, "db.down")


# --------------------------------------------------------------------------- bad input


PRODUCTION = {
    "APPLICATION_CONFIG": "production",
    "SECRET_KEY": "d41d8cd98f00b204e9800998ecf8427e",
    "POSTGRES_PASSWORD": "pw",
}
NO_ENGINE = "unix:///nonexistent/docker.sock"
# One real `inv` run per kind of refusal; tests/test_steps.py checks each message in-process.
BAD_INPUT = [
    (["db.up"], {"APPLICATION_CONFIG": "staging"}, "unknown APPLICATION_CONFIG 'staging'"),
    (["test"], {"APPLICATION_CONFIG": "develpment"}, "unknown APPLICATION_CONFIG 'develpment'"),
    (["test"], {"APPLICATION_DB": "test; DROP"}, "is not a plain identifier"),
    (["db.up"], {"PG_BIN": "/nonexistent"}, "PG_BIN=/nonexistent has no `postgres`"),
    (["db.reset"], {}, "no terminal to ask on: pass --yes"),
    (["compose", "up", "-d"], {}, "as in `inv compose -- up -d`"),
    (["db.seed", "nope"], {}, "no scenario 'nope' (scenarios/nope.py): choose one of"),
    (["scenario", "ten_users"], PRODUCTION, "scenarios are test and demo data"),
    (["flask", "--", "routes"], {**PRODUCTION, "FLASK_DEBUG": "1"}, "FLASK_DEBUG is on with the production config"),
    (["db.up"], {"DB_SERVER": "compose", "PATH": "/nonexistent"}, "no Docker client (`docker`) found"),
    (["db.up"], {"DB_SERVER": "compose", "DOCKER_HOST": NO_ENGINE}, "found no engine answering"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_a_failure(project, args, env, message):
    result = inv(project, *args, **env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_an_impostor_on_our_servers_ports_gets_no_connection(project, dev_port):
    """Local servers listen on a private Unix socket only: a squatted or raced port gets nothing."""
    squatter, racer = Impostor(), Impostor()
    assert squatter.listen(int(dev_port)) == int(dev_port)
    racer.race(project.name)
    try:
        assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
        assert inv(project, "flask", "--", "db", "current", POSTGRES_PORT=dev_port).returncode == 0
        web_port = str(free_port())
        dev = start_inv(project, "local", "dev", POSTGRES_PORT=dev_port, FLASK_RUN_PORT=web_port)
        try:
            health = fetch_when_up(
                f"http://127.0.0.1:{web_port}/health", lambda: dev.poll() is None
            )
            assert health is not None and json.loads(health)["database"] == "ok"
        finally:
            dev.send_signal(signal.SIGINT)
            dev.communicate(timeout=TIMEOUT)
        tests = inv(project, "test")
        assert tests.returncode == 0, tests.stdout + tests.stderr
    finally:
        racer.done.set()
        inv(project, "db.down")
    assert squatter.received == racer.received == []


def test_a_wrong_password_fails_at_once_not_at_the_deadline(project):
    assert inv(project, "db.up", APPLICATION_CONFIG="testing").returncode == 0
    try:
        status = inv(project, "db.status", APPLICATION_CONFIG="testing").stdout
        host, port = re.search(r"running on (\S+):(\d+)", status).groups()
        started = time.monotonic()
        result = inv(
            project, "test", DB_SERVER="external", POSTGRES_HOSTNAME=host, POSTGRES_PORT=port,
            POSTGRES_PASSWORD="wrong",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        inv(project, "db.down", APPLICATION_CONFIG="testing")
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert elapsed < postgres.READY_TIMEOUT / 2, "the wait retried a fatal error"


def test_auto_uses_local_binaries_when_no_docker_engine_answers(project):
    result = inv(project, "db.status", DB_SERVER="auto", DOCKER_HOST=NO_ENGINE)
    assert result.returncode == 0, result.stderr
    assert "local, chosen by DB_SERVER=auto: no Docker engine answered" in result.stdout


def test_inv_serve_runs_gunicorn_and_stops_on_ctrl_c(project, dev_port, app_with_a_bug, tmp_path):
    """A bug is the JSON 500 there, FLASK_DEBUG=1 or not, and no control socket lands in HOME."""
    web_port = str(free_port())
    # A master and its worker, each importing the app: one worker is enough to stop.
    run = start_inv(
        project, "local", "serve", POSTGRES_PORT=dev_port, WEB_PORT=web_port,
        WEB_CONCURRENCY="1", FLASK_DEBUG="1", HOME=str(tmp_path),
    )  # fmt: skip
    try:
        body = fetch_when_up(f"http://127.0.0.1:{web_port}/health", lambda: run.poll() is None)
        assert body is not None and b'"database":"ok"' in body.replace(b" ", b"")
        status, content_type, error = fetch_error(f"http://127.0.0.1:{web_port}{app_with_a_bug}")
        assert (status, content_type) == (500, "application/json")
        assert json.loads(error)["error"]["code"] == "internal_error"
    finally:
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode in (0, 130), output
    assert not (tmp_path / ".gunicorn").exists()
    assert "gunicorn" in output
    assert postgres.port_is_free(int(web_port))
    inv(project, "db.down")


def test_no_flaskenv_of_a_parent_folder_is_loaded(project, tmp_path, dev_port):
    """Flask's CLI reads .flaskenv and .env from every parent folder, where others may write."""
    ran = tmp_path / "ran"
    evil = project.parent / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n")
    planted = [project.parent / name for name in (".flaskenv", ".env")]
    for path in planted:
        path.write_text(f"FLASK_APP={evil}\nFLASK_RUN_PORT=1\n")
    try:
        result = inv(project, "flask", "--", "routes", POSTGRES_PORT=dev_port)
    finally:
        inv(project, "db.down")
        for path in [evil, *planted]:
            path.unlink()
    assert result.returncode == 0, result.stderr
    assert "/users" in result.stdout
    assert not ran.exists(), "a module named by a parent folder's .flaskenv ran"


def test_with_database_url_set_the_db_tasks_touch_no_database(project, dev_port):
    """They refuse: DATABASE_URL names another database than the one they manage."""
    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
    password = dev_password(project)
    socket = local_socket(project)
    dsn = f"host={socket} port={dev_port} user=postgres password={password} dbname=application"
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, email_folded) VALUES ('untouched@example.com', 'untouched@example.com')"
        )
    connection.close()
    precious = f"postgresql://postgres:{password}@/precious?host={socket}&port={dev_port}"
    try:
        for args in (["db.reset", "--yes"], ["db.downgrade", "--yes"], ["db.upgrade"]):
            result = inv(project, *args, POSTGRES_PORT=dev_port, DATABASE_URL=precious)
            assert result.returncode == 1, result.stderr
            assert result.stderr.count("\n") == 1, result.stderr
            assert (
                f"DATABASE_URL names the database precious at {socket}:{dev_port}" in result.stderr
            )
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users WHERE email = 'untouched@example.com'")
            assert cursor.fetchone() == (1,)
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = 'precious'")
            assert cursor.fetchone() == (0,)
        connection.close()
    finally:
        inv(project, "db.down")


def test_db_init_without_migrations_over_a_migrated_database_writes_nothing(project, dev_port):
    migrations, aside = project / "migrations", project / "migrations-aside"
    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
    migrations.rename(aside)
    try:
        result = inv(project, "db.init", POSTGRES_PORT=dev_port)
        assert not migrations.exists(), "flask db init wrote a stock migrations/"
    finally:
        shutil.rmtree(migrations, ignore_errors=True)
        aside.rename(migrations)
        inv(project, "db.down")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("inv: migrations/ is missing, and")
    assert "restore it (`git checkout -- migrations`)" in result.stderr
