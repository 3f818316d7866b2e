"""The tests' database (steps/templates.py): a copy of a template at the migrations' head."""

import contextlib
import os
import shutil

import psycopg2
import pytest

from steps import PROJECT, scenarios, templates
from steps.servers import clone_databases


@pytest.fixture
def server(test_server, test_database):
    """(env, a connection to the test server's maintenance database)."""
    env, host, port = test_server
    with templates.server_connection(env, host, port) as connection:
        yield env, connection


def databases(connection, prefix: str) -> dict[str, tuple[bool, bool]]:
    """{name: (is a template, allows connections)} of the databases starting with `prefix`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT datname, datistemplate, datallowconn FROM pg_database "
            "WHERE starts_with(datname, %s)",
            (prefix,),
        )
        return {name: (template, allowed) for name, template, allowed in cursor.fetchall()}


def test_each_process_works_in_a_copy_of_a_template_nobody_can_connect_to(server, test_database):
    env, connection = server
    prefix, copies = clone_databases(env)
    assert test_database == f"{copies}{os.getpid()}"
    template = prefix + templates.migrations_digest()
    heads = {n: v for n, v in databases(connection, prefix).items() if len(n) == len(template)}
    assert heads == {template: (True, False)}  # beside the scenarios' (longer names)
    with pytest.raises(psycopg2.OperationalError, match="is not currently accepting connections"):
        psycopg2.connect(**{**connection.get_dsn_parameters(), "dbname": template,
                            "password": env["POSTGRES_PASSWORD"]})  # fmt: skip


def test_editing_a_migration_makes_a_new_template_and_drops_the_old_one(
    server, tmp_path, monkeypatch
):
    env, connection = server
    prefix = clone_databases(env)[0]
    shutil.copytree(PROJECT / "migrations", tmp_path / "migrations")
    first = next((tmp_path / "migrations" / "versions").glob("0001_*.py"))
    first.write_text(first.read_text() + "\n# edited\n")
    before = templates.template_at_head(env, connection)
    monkeypatch.setattr(templates, "PROJECT", tmp_path)
    try:
        edited = templates.template_at_head(env, connection)
        assert edited != before
        assert databases(connection, prefix) == {edited: (True, False)}
    finally:
        monkeypatch.undo()
        assert templates.template_at_head(env, connection) == before
    assert databases(connection, prefix) == {before: (True, False)}


def test_a_template_half_made_by_a_killed_run_is_made_again(server):
    env, connection = server
    template = templates.template_at_head(env, connection)
    with connection.cursor() as cursor:  # as if the run was killed before its last step
        cursor.execute(f'ALTER DATABASE "{template}" IS_TEMPLATE false ALLOW_CONNECTIONS true')
    assert templates.template_at_head(env, connection) == template
    assert databases(connection, template) == {template: (True, False)}


def test_copies_left_by_killed_processes_are_dropped_and_live_ones_kept(server):
    env, connection = server
    if env.db_server == "external":
        pytest.skip("DB_SERVER=external: process ids of another machine mean nothing here")
    copies = clone_databases(env)[1]
    dead = 2**22 + 1  # above the kernel's largest process id
    dead_ones = [f"{copies}{dead}", f"{copies}{dead}_{templates.scenario_label('x')[:-1]}"]
    with connection.cursor() as cursor:
        for name in dead_ones:
            cursor.execute(f'CREATE DATABASE "{name}"')
    with contextlib.ExitStack() as cleanup:
        for name in dead_ones:
            cleanup.callback(templates.drop, connection.cursor(), name)
        templates.remove_abandoned_copies(env, connection)
        left = set(databases(connection, copies))
        assert not left & set(dead_ones) and f"{copies}{os.getpid()}" in left


@pytest.fixture
def scenario_folder(tmp_path, monkeypatch):
    """A copy of scenarios/ to edit, which the steps then read."""
    shutil.copytree(PROJECT / "scenarios", tmp_path / "scenarios")
    monkeypatch.setattr(scenarios, "FOLDER", tmp_path / "scenarios")
    return tmp_path / "scenarios"


def test_editing_a_scenario_rebuilds_its_template_only(server, scenario_folder):
    env, connection = server
    head = templates.template_at_head(env, connection)
    ten = templates.scenario_template(env, connection, "ten_users")
    (scenario_folder / "no_users.py").write_text('"""None."""\n\n\ndef build(session):\n    pass\n')
    other = templates.scenario_template(env, connection, "no_users")
    assert templates.scenario_template(env, connection, "ten_users") == ten  # kept
    module = scenario_folder / "ten_users.py"
    module.write_text(module.read_text().replace("range(10)", "range(3)"))
    edited = templates.scenario_template(env, connection, "ten_users")
    assert edited != ten
    assert set(databases(connection, templates.clone_databases(env)[0])) == {head, edited, other}


def test_editing_a_migration_rebuilds_the_scenarios(server, tmp_path, monkeypatch):
    env, connection = server
    before = templates.scenario_template(env, connection, "ten_users")
    shutil.copytree(PROJECT / "migrations", tmp_path / "migrations")
    first = next((tmp_path / "migrations" / "versions").glob("0001_*.py"))
    first.write_text(first.read_text() + "\n# edited\n")
    monkeypatch.setattr(templates, "PROJECT", tmp_path)
    assert templates.scenario_template(env, connection, "ten_users") != before


def test_a_scenario_that_raises_leaves_no_template(server, scenario_folder):
    env, connection = server
    (scenario_folder / "broken.py").write_text(
        '"""Half the data, then an error."""\n\nfrom app.models import User\n\n\n'
        "def build(session):\n"
        '    session.add(User(email="a@example.com"))\n'
        "    session.flush()\n"
        '    raise RuntimeError("the scenario broke")\n'
    )
    with pytest.raises(RuntimeError, match="the scenario broke"):
        templates.scenario_template(env, connection, "broken")
    label = templates.clone_databases(env)[0] + templates.scenario_label("broken")
    assert databases(connection, label) == {}
