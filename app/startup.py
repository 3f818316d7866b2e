"""`flask prepare-database`: what a container runs before it serves (compose/entrypoint.sh).

Wait for the server, create the app's database on a server of the stack's own, then migrate
to head under an advisory lock: however many replicas start at once, one migrates and the
others wait, then find the database at head.
"""

import logging
import os
import time

import click
import psycopg2
from flask.cli import with_appcontext
from psycopg2 import errors, sql
from sqlalchemy import text
from sqlalchemy.engine import URL

from app.extensions import db, init_migrations
from app.health import connect_arguments

# Any constant: every process migrating this database takes the same lock.
MIGRATION_LOCK = 7_201_701
# Waiting longer than this is not a slow start but a wrong address or password.
FATAL_CONNECT_ERRORS = ("authentication failed", "no pg_hba.conf entry")

log = logging.getLogger(__name__)


class StartupError(click.ClickException):
    """One line saying why the app will not serve."""

    def format_message(self) -> str:
        return f"prepare-database: {self.message}; not serving"


def say(message: str) -> None:
    click.echo(f"prepare-database: {message}", err=True)


def wait_for_server(url: URL, timeout: float) -> None:
    """Until a real connection to `url` succeeds; wrong credentials fail at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(**connect_arguments(url), connect_timeout=3).close()
            return
        except psycopg2.OperationalError as error:
            reason = (str(error).strip().splitlines() or [repr(error)])[-1]
            if any(text in reason for text in FATAL_CONNECT_ERRORS):
                raise StartupError(
                    f"PostgreSQL at {url.host}:{url.port} refused us: {reason}"
                ) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StartupError(
                    f"no PostgreSQL answered at {url.host}:{url.port} within {timeout:.0f} s: {reason}"
                ) from None
            time.sleep(min(0.5, left))


def create_database(url: URL, maintenance_db: str) -> None:
    """Create url's database when missing, from the server's maintenance database."""
    connection = psycopg2.connect(**connect_arguments(url.set(database=maintenance_db)))
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
            if cursor.fetchone():
                return
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
                say(f"created database {url.database}")
            except errors.DuplicateDatabase:  # another replica created it first
                pass
    finally:
        connection.close()


def migrate_to_head() -> None:
    """`flask db upgrade` under the advisory lock. PostgreSQL runs DDL in transactions, so a
    failed migration leaves the schema as it was."""
    from flask import current_app
    from flask_migrate import upgrade

    init_migrations(current_app)
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            upgrade()
        except Exception as error:
            log.exception("the migration failed")
            raise StartupError(f"the migration failed: {error}") from None
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
    db.engine.dispose()


@click.command("prepare-database")
@click.option(
    "--create/--no-create",
    default=None,
    help="Create the database if missing (default: when DATABASE_URL is not set, i.e. a "
    "server of the stack's own; a managed database must exist).",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the server.")
@with_appcontext
def prepare_database(create: bool | None, timeout: float) -> None:
    """Wait for the database server, create the database if asked, migrate it to head."""
    url = db.engine.url
    if create is None:
        create = not os.environ.get("DATABASE_URL")
    maintenance_db = os.environ.get("POSTGRES_DB") or "postgres"
    wait_for_server(url.set(database=maintenance_db) if create else url, timeout)
    if create:
        create_database(url, maintenance_db)
    migrate_to_head()
    say(f"database {url.database} on {url.host}:{url.port} is at head")
