"""Fixtures named for what they give: `app`, `client`, `database`.

Under `inv test` the test database is the one it started. Under plain `pytest` (a terminal,
an IDE) the first test that needs a database starts a throwaway one through the same steps,
or uses the warm one of `APPLICATION_CONFIG=testing inv db.up`, and stops what it started.
"""

import contextlib
import functools
import gc
import json
import os
import signal
import socket

import pytest

# The modules imported while collecting and building the app live as long as the run: the
# collector need not walk them (on import, and at each later collection, such as pytest's at
# the session's end). Freezing them saves about 0.3 s of a small run (benchmarks/tdd_loop.py).
gc.disable()


def pytest_collection_finish(session):
    gc.freeze()
    gc.enable()


# What `inv test` exports once its database is ready (steps.servers.TEST_DATABASE), and the
# socket on which it sends that and the rest when pytest started first (TEST_DATABASE_SOCKET);
# not imported from there: that would import invoke into every run.
PREPARED = "INV_TEST_DATABASE"


def inv_socket() -> socket.socket | None:
    """The socket `inv test` gave, taken out of the environment at once: no process the tests
    start may take it for its own."""
    descriptor = os.environ.pop("INV_TEST_DATABASE_SOCKET", None)
    if descriptor is None:
        return None
    try:
        connection = socket.socket(fileno=int(descriptor))
    except (OSError, ValueError):
        return None
    connection.set_inheritable(False)
    return connection


INV = inv_socket()


def wait_for_inv() -> None:
    """When `inv test` started pytest while its server starts: wait for the database's
    variables (once: then they are in the environment)."""
    if INV is None or os.environ.get(PREPARED):
        return
    message = b""
    while not message.endswith(b"\n"):
        chunk = INV.recv(65536)
        if not chunk:
            pytest.exit("inv could not start the test database (it says why)", returncode=4)
        message += chunk
    os.environ.update(json.loads(message))


def pytest_configure(config):
    """pytest-xdist's workers start with this process's environment: under `inv test`'s
    overlap, the database's variables must be in it first."""
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        wait_for_inv()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtestloop(session):
    """Once the tests and their fixtures are done, inv may stop the server, while pytest-cov
    (its wrapper is outside this one) analyses and reports coverage."""
    try:
        return (yield)
    finally:
        if INV is not None:
            with contextlib.suppress(OSError):
                INV.sendall(b"done\n")


@pytest.fixture(scope="session")
def test_database():
    """(host, port) of the test database: `inv test`'s, or one started for this session."""
    wait_for_inv()
    if os.environ.get(PREPARED):
        host, port = os.environ[PREPARED].rsplit(":", 1)
        yield host, int(port)
        return
    from invoke import Exit

    from steps.environment import load_env
    from steps.servers import database_for_tests

    with contextlib.ExitStack() as stack:
        try:
            host, port = stack.enter_context(database_for_tests(load_env("testing")))
        except Exit as error:
            pytest.exit(error.message or f"exit {error.code}", returncode=4)
        stack.enter_context(sigterm_interrupts())
        yield host, port


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM stops the session as Ctrl-C does (pytest would take the steps' SystemExit for
    a failing test and go on); either way, the session's teardown stops the server."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def app(test_database):
    """The app in the testing config, its database migrated to head once per session."""
    from app import create_app
    from app.extensions import db

    own_database_under_xdist(*test_database)
    app = create_app("testing")
    with app.app_context():
        with db.engine.connect() as connection:
            if not at_head(connection):
                migrate(app, connection)
        db.engine.dispose()
    gc.freeze()  # the app and what building it imported (the database driver) stay too
    return app


def own_database_under_xdist(host: str, port: int) -> None:
    """Each pytest-xdist worker gets a database of its own (APPLICATION_DB_gw0, ...), created
    when missing: a test never waits on, nor sees, the rows of a test in another process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    from sqlalchemy.engine import URL

    from app.startup import create_database

    name = f"{os.environ['APPLICATION_DB']}_{worker}"
    user, password = os.environ["POSTGRES_USER"], os.environ["POSTGRES_PASSWORD"]
    url = URL.create("postgresql+psycopg2", user, password, host, port, name)
    create_database(url, os.environ["POSTGRES_DB"])
    os.environ["APPLICATION_DB"] = name


def migrations_digest() -> str:
    """A digest of migrations/: when it and alembic_version are as the last upgrade left
    them, the schema is at head and alembic need not run (a warm server, run after run)."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent.parent / "migrations").rglob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def schema_mark(connection) -> str | None:
    from sqlalchemy import text  # imported here: pytest-xdist's controller runs no test

    version = connection.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if version is None:
        return None
    revision = connection.execute(text("SELECT max(version_num) FROM alembic_version")).scalar()
    return f"migrations {migrations_digest()} at {revision}"


def at_head(connection) -> bool:
    from sqlalchemy import text

    comment = connection.execute(
        text(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        )
    ).scalar()
    return comment is not None and comment == schema_mark(connection)


def migrate(app, connection) -> None:
    """`flask db upgrade` under the lock the containers take, then mark the database at head."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app.extensions import init_migrations
    from app.startup import MIGRATION_LOCK

    init_migrations(app)
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
    try:
        upgrade()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    name = connection.execute(text("SELECT current_database()")).scalar()
    mark = schema_mark(connection).replace("'", "''")
    connection.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{mark}'"))
    connection.commit()


@pytest.fixture
def database(app):
    """The Flask-SQLAlchemy `db`, its session in a transaction rolled back after the test.

    Savepoint mode: the code under test may commit and roll back as it likes.
    """
    from app.extensions import db

    with app.app_context():
        connection = db.engine.connect()
        transaction = connection.begin()
        outer_session = db.session
        db.session = db._make_scoped_session(
            {
                "class_": connection_bound_session(),
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


@functools.cache
def connection_bound_session():
    """A session class that always uses its bind, the test's connection: Flask-SQLAlchemy's
    Session picks the engine by bind key, which would step out of the test's transaction."""
    from flask_sqlalchemy.session import Session

    class ConnectionBoundSession(Session):
        def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
            return bind or self.bind

    return ConnectionBoundSession


@pytest.fixture
def client(app, database):
    """A test client whose requests share the test's rolled-back transaction."""
    return app.test_client()
