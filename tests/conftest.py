"""`app`, `client` and `database`, on the test database of steps/pytest_database.py."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.pool import NullPool


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
def database(app, scenario_database):
    """The Flask-SQLAlchemy `db`, its session in a transaction rolled back after the test.

    The code under test may commit and roll back (savepoints): nothing of it outlives the test.
    With @pytest.mark.scenario("NAME"), the data of scenarios/NAME.py is there.
    """
    from app.extensions import db

    with app.app_context():
        engine = db.engine
        if scenario_database:  # this process's copy of the scenario, made by the plugin
            engine = create_engine(engine.url.set(database=scenario_database), poolclass=NullPool)
        connection = engine.connect()
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
