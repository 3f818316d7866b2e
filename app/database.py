"""Reaching PostgreSQL before the app runs: wait for a server, create a database."""

import time
from collections.abc import Callable

# psycopg2 only, no Flask or SQLAlchemy: the tasks import this module without building an app.
import psycopg2
from psycopg2 import errors, sql

# Retrying these cannot help: the server answered, and said no.
FATAL_CONNECT_ERRORS = (
    "authentication failed",
    "authentication method requirement",  # PGREQUIREAUTH: the server asked for another kind
    "no pg_hba.conf entry",
    "does not exist",
)


class DatabaseUnavailable(Exception):
    """The server did not answer in time, or stopped; the message says which."""


class ServerRefused(DatabaseUnavailable):
    """The server answered and said no (a wrong password, user or database)."""


def wait_for_server(
    arguments: dict, timeout: float, gone: Callable[[], str | None] = lambda: None
) -> None:
    """Wait until `arguments` connect; a refusal, or a reason from `gone()`, fails at once."""
    where = f"{arguments.get('host')}:{arguments.get('port')}"
    deadline, pause = time.monotonic() + timeout, 0.02
    while True:
        try:
            psycopg2.connect(**{"connect_timeout": 3, **arguments}).close()
            return
        except psycopg2.OperationalError as error:
            reason = (str(error).strip().splitlines() or [repr(error)])[-1]
            if any(text in reason for text in FATAL_CONNECT_ERRORS):
                raise ServerRefused(f"PostgreSQL at {where} refused us: {reason}") from None
            exited = gone()
            if exited:
                raise DatabaseUnavailable(exited) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnavailable(
                    f"no PostgreSQL answered at {where} within {timeout:.0f} s: {reason}"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)


def create_database(arguments: dict, name: str) -> bool:
    """Create database `name` when missing, connecting to another with `arguments`; True if made."""
    connection = psycopg2.connect(**arguments)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:  # another process created it first
                return False
    finally:
        connection.close()
    return True
