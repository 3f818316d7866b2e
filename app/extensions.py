"""The Flask extensions, created unbound and initialised in `create_app`."""

import sys
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
    """Whether this process may run migrations: the flask CLI makes the app inside its click
    context (`flask db` is registered then), and code that upgrades imports Flask-Migrate
    first. Serving and most test runs do neither, and skip alembic's import (0.2 s)."""
    return click.get_current_context(silent=True) is not None or "flask_migrate" in sys.modules
