"""Databases made from templates: one migrated to head, one per scenario, copied in an instant.

A template is built once per clone, server and state of its sources (migrations/, the scenario's
files), under an advisory lock; it then accepts no connection, since a copy fails while one is open.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator

from steps import PROJECT, scenarios
from steps.commands import signals_held
from steps.environment import Env, exported
from steps.postgres import connect, server_connection
from steps.servers import clone_databases
from steps.servers.local_files import process_alive


def migrations_digest() -> str:
    """Of migrations/ (versions and env.py): editing a migration makes a new template."""
    digest = hashlib.sha256()
    for path in sorted((PROJECT / "migrations").rglob("*.py")):
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def template_at_head(env: Env, server) -> str:
    """The template at the migrations' head, built under a lock if missing; older ones dropped."""
    return template(env, server, "", migrations_digest(), lambda name: migrate(env, name))


def scenario_template(env: Env, server, name: str) -> str:
    """The template holding scenarios/NAME.py's data at head, built like the one at head."""
    head = template_at_head(env, server)
    key = hashlib.sha256(f"{head}\0{scenarios.digest(name)}".encode()).hexdigest()[:12]
    host, port = server.info.host, server.info.port

    def fill(database: str) -> None:
        scenarios.build(name, lambda: connect(env, host, port, database))

    return template(env, server, scenario_label(name), key, fill, copied_from=head)


def scenario_label(name: str) -> str:
    """What the names of a scenario's template and copies hold: short, for PostgreSQL's 63 bytes."""
    return f"s{hashlib.sha256(name.encode()).hexdigest()[:8]}_"


def template(env: Env, server, label: str, key: str, fill, copied_from: str | None = None) -> str:
    """Template `<prefix><label><key>`, made (from `copied_from`) and filled if missing; the
    same label's older templates dropped. Under a lock: the other processes wait, then find it."""
    from psycopg2 import sql

    prefix = clone_databases(env)[0]
    name = f"{prefix}{label}{key}"
    with server.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (prefix,))
        try:
            cursor.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() != (True,):
                drop(cursor, name)  # half made by a run that was killed
                create = "CREATE DATABASE {}" + (" TEMPLATE {}" if copied_from else "")
                names = [sql.Identifier(n) for n in (name, copied_from) if n]
                cursor.execute(sql.SQL(create).format(*names))
                try:
                    fill(name)
                except BaseException:
                    drop(cursor, name)
                    raise
                # No connection may open it again: a copy fails while one is open.
                options = "IS_TEMPLATE true ALLOW_CONNECTIONS false"
                cursor.execute(sql.SQL("ALTER DATABASE {} WITH " + options).format(names[0]))
                # A new head: every older template of the clone (scenarios too) is stale.
                older = re.compile(re.escape(prefix + label) + ("[0-9a-f]{12}" if label else ".*"))
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
                )
                for (found,) in cursor.fetchall():
                    if found != name and older.fullmatch(found):
                        drop(cursor, found)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (prefix,))
    return name


def migrate(env: Env, name: str) -> None:
    """`flask db upgrade` of database `name`, as the image does; its connections closed after."""
    from app import create_app
    from app.startup import migrate_to_head

    with exported(APPLICATION_DB=name), create_app(env["FLASK_CONFIG"]).app_context():
        migrate_to_head()


def drop(cursor, name: str) -> None:
    """Drop database `name` if it exists, template or not, closing its connections."""
    from psycopg2 import sql

    cursor.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
    found = cursor.fetchone()
    if found is None:
        return
    if found[0]:
        cursor.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
    cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def copy_of(env: Env, host: str, port: int, template: str, suffix: str = "") -> Iterator[str]:
    """A database made from the template for this process, dropped on the way out."""
    from psycopg2 import sql

    name = f"{clone_databases(env)[1]}{os.getpid()}{suffix}"
    try:  # interrupted while it is made, too
        with server_connection(env, host, port) as server, server.cursor() as cursor:
            drop(cursor, name)
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
            cursor.execute(query.format(sql.Identifier(name), sql.Identifier(template)))
        yield name
    finally:
        with signals_held(), server_connection(env, host, port) as server, server.cursor() as cur:
            drop(cur, name)


def remove_abandoned_copies(env: Env, server) -> None:
    """Drop the copies of this clone's killed pytest processes (not on another machine's server)."""
    if env.db_server == "external":
        return
    prefix = clone_databases(env)[1]
    with server.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        for (name,) in cursor.fetchall():
            pid = name.removeprefix(prefix).split("_")[0]  # a scenario's copy: <pid>_<name>
            if pid.isdigit() and not process_alive(int(pid)):
                drop(cursor, name)


@contextlib.contextmanager
def copy_at_head(env: Env, host: str, port: int) -> Iterator[str]:
    """This process's database at the migrations' head, dropped on the way out."""
    with server_connection(env, host, port) as server:
        remove_abandoned_copies(env, server)
        template = template_at_head(env, server)
    with copy_of(env, host, port, template) as name:
        yield name


@contextlib.contextmanager
def copy_of_scenario(env: Env, host: str, port: int, name: str) -> Iterator[str]:
    """This process's database holding scenarios/NAME.py's data, dropped on the way out."""
    with server_connection(env, host, port) as server:
        remove_abandoned_copies(env, server)
        template = scenario_template(env, server, name)
    with copy_of(env, host, port, template, "_" + scenario_label(name).rstrip("_")) as copy:
        yield copy
