"""Fixtures named for what they give: `app`, `client`, `database`.

The database itself comes from the `test_database` fixture of steps/pytest_database.py: a
PostgreSQL database at the migrations' head, for this pytest process only.
"""

import pytest
from sqlalchemy.orm import scoped_session, sessionmaker


@pytest.fixture(scope="session")
def app(test_database):
    """The app in the testing config, on the test database."""
    from app import create_app
    from app.extensions import db

    app = create_app("testing")
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def database(app):
    """The Flask-SQLAlchemy `db`, its session in a transaction rolled back after the test.

    The session joins that transaction with savepoints: the code under test may commit and
    roll back as it likes, and nothing of it outlives the test.
    """
    from app.extensions import db

    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        session = scoped_session(
            sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
        )
        app_session, db.session = db.session, session
        try:
            yield db
        finally:
            session.remove()
            db.session = app_session
            transaction.rollback()
            connection.close()


@pytest.fixture
def client(app, database):
    """A test client whose requests share the test's rolled-back transaction."""
    return app.test_client()
