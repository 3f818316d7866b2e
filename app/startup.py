"""`flask prepare-database`: what a container runs before it serves (compose/entrypoint.sh)."""

import logging
import os

import click
from flask.cli import with_appcontext
from sqlalchemy import text

from app.database import DatabaseUnavailable, create_database, wait_for_server
from app.extensions import db, init_migrations
from app.health import connect_arguments

# Any constant, the same in every replica: one migrates, the others wait and then find head.
MIGRATION_LOCK = 7_201_701

log = logging.getLogger(__name__)


class StartupError(click.ClickException):
    """One line saying why the app will not serve."""

    def format_message(self) -> str:
        return f"prepare-database: {self.message}; not serving"


def say(message: str) -> None:
    click.echo(f"prepare-database: {message}", err=True)


def migrate_to_head() -> None:
    """`flask db upgrade` of the app's database under the advisory lock; its connections closed."""
    from flask import current_app
    from flask_migrate import upgrade

    init_migrations(current_app)
    with db.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            upgrade()
        except Exception as error:  # PostgreSQL's DDL is transactional: nothing changed
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
    server = connect_arguments(url.set(database=maintenance_db) if create else url)
    try:
        wait_for_server(server, timeout)
    except DatabaseUnavailable as error:
        raise StartupError(str(error)) from None
    if create and create_database(server, url.database):
        say(f"created database {url.database}")
    migrate_to_head()
    say(f"database {url.database} on {url.host}:{url.port} is at head")
