"""Scenarios, snapshots and dumps: inv db.seed, scenario, db.snapshot, db.restore, db.dump, db.load."""

import contextlib
import json
import re
import signal
import threading

import psycopg2
import pytest
from project_copy import (
    TIMEOUT,
    dev_password,
    fetch_when_up,
    local_inv,
    local_socket,
    module_copy,
    on_a_terminal,
)
from project_copy import start_inv as start_inv_with

project = module_copy("data_tasks")
inv = local_inv


@pytest.fixture
def development(project):
    """The copy's development database, emptied after the test."""
    yield
    inv(project, "db.reset", "--yes")


def socket_number(project) -> str:
    """The number of the copy's running development server's socket, as db.status names it."""
    return re.search(r":(\d+);", inv(project, "db.status").stdout)[1]


def login(project, database: str = "application") -> dict:
    """psycopg2's arguments for the copy's running development server, as the app has them."""
    return {
        "host": local_socket(project), "port": socket_number(project), "user": "postgres",
        "dbname": database, "password": dev_password(project),
    }  # fmt: skip


def connect(project, database: str = "application", **options):
    """A connection to the copy's running development server, as the app makes one."""
    connection = psycopg2.connect(**login(project, database), **options)
    connection.autocommit = True
    return connection


def query(project, sql: str, database: str = "application"):
    connection = connect(project, database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


USERS = "SELECT count(*) FROM users"


def test_inv_scenarios_lists_each_with_its_docstring(project):
    listed = inv(project, "scenarios").stdout.splitlines()
    assert re.fullmatch(
        r"ten_users +Ten users, user0@example.com to user9@example.com\.", listed[-1]
    )


def test_db_seed_asks_before_adding_to_rows_and_adds_nothing_when_it_fails(project, development):
    assert inv(project, "db.seed", "ten_users").returncode == 0
    users = "SELECT count(*) FROM users"
    assert query(project, users) == [(10,)]
    asked = inv(project, "db.seed", "ten_users")  # no terminal to ask on
    assert asked.returncode == 1
    assert "the development database application has rows (in users)" in asked.stderr
    again = inv(project, "db.seed", "ten_users", "--yes")  # the same emails a second time
    assert again.returncode == 1
    assert "the ten_users scenario failed, nothing was added: IntegrityError" in again.stderr
    assert query(project, users) == [(10,)]


def test_inv_scenario_serves_its_data_and_drops_its_database_on_ctrl_c(project, development):
    assert inv(project, "db.init").returncode == 0  # the app's own database, which stays empty
    run = start_inv_with(project, "local", "scenario", "ten_users")
    try:
        for line in run.stdout:
            if found := re.search(r"serving the ten_users scenario at (\S+) .* drops (\w+)", line):
                url, database = found.groups()
                break
        else:
            pytest.fail("inv scenario ended before it served")
        body = fetch_when_up(f"{url}users?limit=50", lambda: run.poll() is None)
        assert len(json.loads(body)["users"]) == 10
        assert query(project, "SELECT count(*) FROM users", database) == [(10,)]
        assert query(project, "SELECT count(*) FROM users") == [(0,)]  # the app's own: untouched
    finally:
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode == 130, output
    names = {name for (name,) in query(project, "SELECT datname FROM pg_database", "postgres")}
    assert database not in names


def test_a_snapshot_brings_the_data_back_after_a_yes(project, development):
    assert inv(project, "db.seed", "ten_users").returncode == 0
    assert inv(project, "db.snapshot", "seeded").returncode == 0
    again = inv(project, "db.snapshot", "seeded")
    assert again.returncode == 1 and "snapshot seeded exists" in again.stderr
    query(project, "DELETE FROM users WHERE email <> 'user0@example.com'")
    asked = inv(project, "db.restore", "seeded")  # no terminal to ask on
    assert asked.returncode == 1
    assert "replace the development database application (at 0003, rows in users)" in asked.stderr
    assert query(project, USERS) == [(1,)]
    assert inv(project, "db.restore", "seeded", "--yes").returncode == 0
    assert query(project, USERS) == [(10,)]
    listed = inv(project, "db.snapshots").stdout
    assert re.search(r"^seeded +[0-9.]+ MB  at 0003  \d+ s old$", listed, re.M), listed
    assert inv(project, "db.snapshot", "--rm", "seeded").returncode == 0
    gone = inv(project, "db.restore", "seeded", "--yes")
    assert gone.returncode == 1 and "no snapshot seeded" in gone.stderr


def test_a_restore_ends_the_apps_connections_only_on_a_yes(project, development):
    assert inv(project, "db.seed", "ten_users").returncode == 0
    assert inv(project, "db.snapshot", "seeded").returncode == 0
    query(project, "DELETE FROM users")
    app = connect(project, application_name="the app")
    try:
        status, output = on_a_terminal(
            project, ["db.restore", "seeded"],
            [("with snapshot seeded", b"y\n"), ("end these connections?", b"n\n")],
        )  # fmt: skip
        assert status == 1, output
        assert re.search(r"application is in use by pid \d+ \(the app\)", output), output
        assert "cancelled, nothing changed" in output
        with app.cursor() as cursor:  # still connected, the data as it was
            cursor.execute(USERS)
            assert cursor.fetchall() == [(0,)]
        with reconnecting(project):  # an app's pool, opening again what the restore ended
            restored = inv(project, "db.restore", "seeded", "--yes")
        assert restored.returncode == 0, restored.stderr
        with pytest.raises(psycopg2.OperationalError), app.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        app.close()
        inv(project, "db.snapshot", "--rm", "seeded")
    assert query(project, USERS) == [(10,)]  # and it takes connections again


@contextlib.contextmanager
def reconnecting(project):
    """For this block, a connection kept open on the app's database, opened again once ended."""
    arguments = login(project)  # looked up once: db.status is an inv run
    done = threading.Event()

    def again() -> None:
        while not done.is_set():
            with contextlib.suppress(psycopg2.Error):
                connection = psycopg2.connect(**arguments, application_name="the app")
                with contextlib.closing(connection), connection.cursor() as cursor:
                    while not done.wait(0.02):
                        cursor.execute("SELECT 1")

    thread = threading.Thread(target=again)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_dump_loads_back_and_a_broken_one_changes_nothing(project, development, tmp_path):
    assert inv(project, "db.seed", "ten_users").returncode == 0
    dump = tmp_path / "app.dump"
    assert inv(project, "db.dump", "--file", str(dump)).returncode == 0
    assert dump.stat().st_mode & 0o077 == 0  # the rows are nobody else's to read
    query(project, "DELETE FROM users WHERE email <> 'user0@example.com'")
    assert inv(project, "db.load", str(dump), "--yes").returncode == 0
    assert query(project, USERS) == [(10,)]
    broken = tmp_path / "broken.dump"
    broken.write_bytes(dump.read_bytes()[: len(dump.read_bytes()) // 2])
    query(project, "DELETE FROM users WHERE email <> 'user0@example.com'")
    failed = inv(project, "db.load", str(broken), "--yes")
    assert failed.returncode == 1
    assert "pg_restore failed, the database is as it was" in failed.stderr
    assert query(project, USERS) == [(1,)]


def test_a_server_that_makes_no_database_for_its_user_gets_file_snapshots(project, development):
    """A managed server, say: the app's user may not create databases, so no templates."""
    inv(project, "db.init")
    maintenance = connect(project, "postgres")
    with maintenance.cursor() as cursor:
        cursor.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw' NOCREATEDB")
        cursor.execute("CREATE DATABASE limited_app OWNER limited")
    port = socket_number(project)
    external = {
        "DB_SERVER": "external", "POSTGRES_HOSTNAME": local_socket(project), "POSTGRES_PORT": port,
        "POSTGRES_USER": "limited", "POSTGRES_PASSWORD": "limited-pw", "APPLICATION_DB": "limited_app",
    }  # fmt: skip
    try:
        assert inv(project, "db.seed", "ten_users", **external).returncode == 0
        taken = inv(project, "db.snapshot", "seeded", **external)
        assert taken.returncode == 0, taken.stderr
        assert (
            "makes no databases for this user: a pg_dump file, .snapshots/development/seeded.dump"
            in taken.stderr
        )
        assert (project / ".snapshots/development/seeded.dump").stat().st_mode & 0o077 == 0
        query(project, "DELETE FROM users", "limited_app")
        assert inv(project, "db.restore", "seeded", "--yes", **external).returncode == 0
        assert query(project, USERS, "limited_app") == [(10,)]
    finally:
        with maintenance.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS limited_app WITH (FORCE)")
            cursor.execute("DROP ROLE IF EXISTS limited")
        maintenance.close()


def test_destructive_tasks_name_the_server_and_database_they_act_on(project, development):
    assert inv(project, "db.init").returncode == 0
    port = socket_number(project)
    where = f"{local_socket(project)}:{port}"
    reset = inv(project, "db.reset", "--yes")
    assert f"the development database application at {where} recreated at head" in reset.stderr
    upgraded = inv(project, "db.upgrade")
    assert f"the development database application at {where} is at 0003_" in upgraded.stderr


SCENARIO_TEST = """import pytest
from sqlalchemy import func, select

from app.models import User


@pytest.mark.scenario("ten_users")
def test_ten(database):
    assert database.session.scalar(select(func.count()).select_from(User)) == 10
"""


def test_a_scenario_test_runs_on_an_external_server(project, development):
    """Someone else's server (here the copy's development one, reached as an external one)."""
    assert inv(project, "db.up").returncode == 0
    port = socket_number(project)
    (project / "tests" / "test_scenario_sample.py").write_text(SCENARIO_TEST)
    try:
        ran = inv(
            project, "test", "--", "tests/test_scenario_sample.py", DB_SERVER="external",
            POSTGRES_HOSTNAME=local_socket(project), POSTGRES_PORT=port,
            POSTGRES_PASSWORD=dev_password(project),
        )  # fmt: skip
    finally:
        (project / "tests" / "test_scenario_sample.py").unlink()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout
    copies = query(project, "SELECT datname FROM pg_database WHERE datname ~ '_pid'", "postgres")
    assert copies == []  # each run's copies dropped at its end


def test_dump_and_load_through_database_url(project, development, tmp_path):
    """A managed database, as DATABASE_URL names it: here the copy's server, over its socket."""
    assert inv(project, "db.seed", "ten_users").returncode == 0
    port = socket_number(project)
    url = f"postgresql://postgres:{dev_password(project)}@/application?host={local_socket(project)}&port={port}"
    dump = tmp_path / "managed.dump"
    dumped = inv(project, "db.dump", "--file", str(dump), DATABASE_URL=url)
    assert dumped.returncode == 0, dumped.stderr
    assert "(DATABASE_URL)" in dumped.stderr and dev_password(project) not in dumped.stderr
    query(project, "DELETE FROM users")
    loaded = inv(project, "db.load", str(dump), "--yes", DATABASE_URL=url)
    assert loaded.returncode == 0, loaded.stderr
    assert query(project, USERS) == [(10,)]
