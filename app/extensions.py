"""The Flask extensions, created unbound and initialised in `create_app`."""

from pathlib import Path

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

db = SQLAlchemy()


def init_migrations(app: Flask) -> None:
    """Flask-Migrate on `app` (idempotent): `flask db`, prepare-database and upgrades need it."""
    from flask_migrate import Migrate

    if "migrate" not in app.extensions:
        Migrate(app, db, directory=str(MIGRATIONS))


def migrations_wanted() -> bool:
    """Whether the flask CLI makes this app (inside its click context): `flask db` is wanted."""
    # Serving and tests skip alembic's import; code that upgrades calls init_migrations itself.
    return click.get_current_context(silent=True) is not None


def install_database_deadline(app: Flask) -> None:
    """Give a request DATABASE_TIMEOUT in all for the database; log a session failing to close."""
    import functools
    import logging
    import time

    from flask import g
    from psycopg2.extensions import set_wait_callback
    from sqlalchemy.exc import SQLAlchemyError

    from app.health import wait_within_request_deadline

    # Process-wide: the last app made sets it.
    set_wait_callback(
        functools.partial(wait_within_request_deadline, timeout=app.config["DATABASE_TIMEOUT"])
    )

    @app.before_request
    def start_the_database_clock() -> None:
        # From the request's start: time spent waiting for a pooled connection counts too.
        g.database_deadline = time.monotonic() + app.config["DATABASE_TIMEOUT"]

    @app.teardown_appcontext
    def close_session(error: BaseException | None) -> None:
        # Runs before Flask-SQLAlchemy's own teardown, which then has nothing left to close.
        try:
            db.session.remove()
        except (SQLAlchemyError, OSError):  # logged, not an HTML 500 after the app's answer
            logging.getLogger(__name__).warning("closing the session failed", exc_info=True)
            db.session.registry.clear()
