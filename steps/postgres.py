"""A PostgreSQL server, whoever runs it: ports, a real connection, the app's database."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import NoReturn

from steps.commands import fail
from steps.environment import Env, where_to_set

LOOPBACK = "127.0.0.1"
READY_TIMEOUT = 30.0


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen there (TIME_WAIT leftovers do not count, as for servers)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def busy_port_error(env: Env, port: int) -> NoReturn:
    fail(
        f"port {port} on {LOOPBACK} is already in use: {where_to_set(env, 'POSTGRES_PORT')} "
        "(or stop what listens there)"
    )


def connect_arguments(env: Env, host: str, port: int, dbname: str | None = None) -> dict:
    """psycopg2.connect keywords for the env's superuser on `dbname` (its POSTGRES_DB)."""
    user, password = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]
    return {
        "host": host, "port": port, "user": user, "password": password,
        "dbname": dbname or env["POSTGRES_DB"], "application_name": "inv",
    }  # fmt: skip


def connect(env: Env, host: str, port: int, dbname: str | None = None):
    import psycopg2

    return psycopg2.connect(**connect_arguments(env, host, port, dbname), connect_timeout=3)


@contextlib.contextmanager
def server_connection(env: Env, host: str, port: int) -> Iterator:
    """A connection to the server's maintenance database, each statement its own transaction."""
    with contextlib.closing(connect(env, host, port)) as connection:
        connection.autocommit = True
        yield connection


def wait_until_ready(
    env: Env,
    host: str,
    port: int,
    timeout: float = READY_TIMEOUT,
    gone: Callable[[], str | None] = lambda: None,
) -> None:
    """Until a real connection succeeds (app/database.py); `gone` says why our server stopped."""
    from app.database import DatabaseUnavailable, ServerRefused, wait_for_server

    try:
        wait_for_server(connect_arguments(env, host, port), timeout, gone)
    except ServerRefused as error:
        fail(f"{error} (check POSTGRES_USER/_PASSWORD/_DB)")
    except DatabaseUnavailable as error:
        fail(str(error))


def create_database(env: Env, host: str, port: int) -> bool:
    """Create APPLICATION_DB if missing (app/database.py); True if created."""
    import psycopg2

    from app.database import create_database as create

    try:
        return create(connect_arguments(env, host, port), env["APPLICATION_DB"])
    except psycopg2.Error as error:
        fail(f"cannot create database {env['APPLICATION_DB']!r}: {str(error).strip()}")


def drop_database(env: Env, host: str, port: int) -> None:
    """Drop APPLICATION_DB, closing the connections still open on it."""
    from psycopg2 import sql

    with server_connection(env, host, port) as connection, connection.cursor() as cursor:
        name = sql.Identifier(env["APPLICATION_DB"])
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def applied_revision(env: Env, host: str, port: int) -> str | None:
    """The migration APPLICATION_DB is at (alembic_version), None if it has none."""
    import psycopg2
    from psycopg2 import errors

    name = env["APPLICATION_DB"]
    try:
        connection = connect(env, host, port, name)
    except psycopg2.OperationalError as error:
        fail(f"cannot open database {name!r}: {str(error).strip()}")
    with contextlib.closing(connection), connection.cursor() as cursor:
        try:
            cursor.execute("SELECT version_num FROM alembic_version")
        except errors.UndefinedTable:
            return None
        row = cursor.fetchone()
    return row[0] if row else None


def tables_with_rows(env: Env, host: str, port: int) -> list[str]:
    """The tables of APPLICATION_DB that hold rows (alembic_version aside)."""
    from psycopg2 import sql

    connection = connect(env, host, port, env["APPLICATION_DB"])
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE tablename <> 'alembic_version' "
            "AND schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY tablename"
        )
        found = []
        for schema, table in cursor.fetchall():
            name = sql.Identifier(schema, table)
            cursor.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(name))
            found += [table] if cursor.fetchone()[0] else []
    return found


def set_password(env: Env, host: str, port: int, password: str) -> str:
    """Give POSTGRES_USER a new password (connecting with its current one); returns it."""
    from psycopg2 import sql

    with server_connection(env, host, port) as connection, connection.cursor() as cursor:
        role = sql.Identifier(env["POSTGRES_USER"])
        cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (password,))
    return password
