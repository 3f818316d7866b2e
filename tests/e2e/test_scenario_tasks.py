"""inv db.seed, inv scenario and inv scenarios, as a user runs them, in a copy of the project."""

import json
import re
import signal

import psycopg2
import pytest
from project_copy import TIMEOUT, dev_password, fetch_when_up, local_inv, local_socket, module_copy
from project_copy import start_inv as start_inv_with

project = module_copy("scenario_tasks")
inv = local_inv


@pytest.fixture
def development(project):
    """The copy's development database, emptied after the test."""
    yield
    inv(project, "db.reset", "--yes")


def query(project, sql: str, database: str = "application"):
    port = re.search(r":(\d+);", inv(project, "db.status").stdout).group(1)
    connection = psycopg2.connect(
        host=local_socket(project), port=port, user="postgres", dbname=database,
        password=dev_password(project),
    )  # fmt: skip
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        connection.close()


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
