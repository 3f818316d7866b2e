"""Fixtures named for what they give: `app`, `client`, `database`.

The suite runs through `inv test`, which starts a throwaway PostgreSQL and exports
its address in the variables the app reads.
"""

import os

import pytest
from flask_migrate import upgrade
from flask_sqlalchemy.session import Session
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.startup import MIGRATION_LOCK


class ConnectionBoundSession(Session):
    """A session that always uses its bind, the test's connection.

    Flask-SQLAlchemy's Session picks the engine by bind key, which would step out of
    the test's transaction.
    """

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        return bind or self.bind


@pytest.fixture(scope="session")
def app():
    """The app in the testing config, its database migrated to head once per session."""
    if os.environ.get("APPLICATION_CONFIG") != "testing":
        pytest.exit(
            "run the suite with `inv test`: it starts a throwaway PostgreSQL and exports "
            "its variables (APPLICATION_CONFIG is not `testing` here)",
            returncode=4,
        )
    app = create_app("testing")
    with app.app_context():
        with db.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                upgrade()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        db.engine.dispose()
    return app


@pytest.fixture
def database(app):
    """The Flask-SQLAlchemy `db`, its session in a transaction rolled back after the test.

    Savepoint mode: the code under test may commit and roll back as it likes.
    """
    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        outer_session = db.session
        db.session = db._make_scoped_session(
            {
                "class_": ConnectionBoundSession,
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
            }
        )
        try:
            yield db
        finally:
            db.session.remove()
            db.session = outer_session
            transaction.rollback()
            connection.close()


@pytest.fixture
def client(app, database):
    """A test client whose requests share the test's rolled-back transaction."""
    return app.test_client()
