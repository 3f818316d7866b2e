import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from app import create_app
from app.extensions import db, init_migrations


def test_the_models_and_the_migrations_agree(app):
    """Fails when a model changed without a migration: run `inv db.migrate -m ...`."""
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


@pytest.fixture
def scratch_database(app, monkeypatch):
    """A database of its own on the test server, dropped afterwards."""
    name = f"migrations_{os.getpid()}"
    admin = create_engine(
        app.config["SQLALCHEMY_DATABASE_URI"].set(database=os.environ["POSTGRES_DB"]),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    monkeypatch.setenv("APPLICATION_DB", name)
    yield name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_every_migration_goes_down_and_up_again(scratch_database):
    app = create_app("testing")
    init_migrations(app)
    with app.app_context():
        upgrade()
        assert "users" in inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert "users" not in inspect(db.engine).get_table_names()
        upgrade()
        assert "users" in inspect(db.engine).get_table_names()
        db.engine.dispose()
