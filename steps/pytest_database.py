"""A pytest plugin: the tests' database, a copy of a template migrated once per migrations/.

The server (throwaway, or the warm one of `db.up`) starts through the steps while pytest collects.
"""

import contextlib
import hashlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from invoke import Exit

from steps import PROJECT, scenarios
from steps.environment import Env, exported, load_env
from steps.postgres import connect
from steps.servers import TEST_DATABASE, clone_databases, database_for_tests
from steps.servers.local_files import process_alive


class Starting(threading.Thread):
    """The tests' server starting while pytest collects, which takes about as long."""

    def __init__(self) -> None:
        # What the thread imports is imported here first: two threads importing one package
        # at once may each meet the other's half-initialised modules (werkzeug's, say).
        import app.database  # noqa: F401
        from steps.servers import compose, local  # noqa: F401

        super().__init__(daemon=True)
        self.env = load_env("testing")
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(sigterm_interrupts())  # signals are the main thread's
        self.lines: list[str] = []  # what the steps say, shown once a test waits for it
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.stack.enter_context(database_for_tests(self.env, report=self.lines.append))
        except BaseException as error:  # raised again where a test waits for the server
            self.error = error


STARTING = pytest.StashKey[Starting]()


def pytest_sessionstart(session) -> None:
    """Start the server now, unless one is given or this is pytest-xdist's (workers start theirs)."""
    config = session.config
    xdist = config.getoption("numprocesses", None) or hasattr(config, "workerinput")
    if not (os.environ.get(TEST_DATABASE) or config.option.collectonly or xdist):
        config.stash[STARTING] = Starting()


@pytest.hookimpl(trylast=True)  # after the fixtures' teardown, which drops the copy
def pytest_sessionfinish(session) -> None:
    starting = session.config.stash.get(STARTING, None)
    if starting is not None:
        starting.join()
        starting.stack.close()


@pytest.fixture(scope="session")
def test_server(request) -> tuple[Env, str, int]:
    """The testing environment, and the host and port of its server, up for the session."""
    config = request.config
    if not os.environ.get(TEST_DATABASE):
        starting = config.stash.setdefault(STARTING, None) or Starting()
        config.stash[STARTING] = starting
        starting.join()
        capture = config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():  # the steps' lines show, not captured
            print("", *(f"inv: {line}" for line in starting.lines), sep="\n", file=sys.stderr)
            if isinstance(starting.error, Exit):
                print(starting.error.message, file=sys.stderr)
                pytest.exit("no test database (see above)", returncode=starting.error.code)
        if starting.error is not None:
            raise starting.error
    host, port = os.environ[TEST_DATABASE].rsplit(":", 1)
    return load_env("testing"), host, int(port)


@pytest.fixture(scope="session")
def test_database(test_server) -> Iterator[str]:
    """This process's copy of the template, its name exported as APPLICATION_DB for the app."""
    env, host, port = test_server
    with server_connection(env, host, port) as server:
        remove_abandoned_copies(env, server)
        template = template_at_head(env, server)
    with copy_of(env, host, port, template) as name:
        os.environ["APPLICATION_DB"] = name
        yield name


@pytest.fixture(scope="session")
def scenario_copies(test_server) -> Iterator[Callable[[str], str]]:
    """This process's copy of a scenario's template by its name: made on first use, dropped after."""
    env, host, port = test_server
    copies: dict[str, str] = {}

    def copy(name: str) -> str:
        if name not in scenarios.names():
            pytest.fail(
                f"no scenario {name!r} (scenarios/{name}.py): choose one of {scenarios.names()}"
            )
        if name not in copies:
            with server_connection(env, host, port) as server:
                template = scenario_template(env, server, name)
            suffix = "_" + scenario_label(name).rstrip("_")
            copies[name] = stack.enter_context(copy_of(env, host, port, template, suffix))
        return copies[name]

    with contextlib.ExitStack() as stack:
        yield copy


@pytest.fixture
def scenario_database(request, scenario_copies) -> str | None:
    """The test's copy of its scenario's data (@pytest.mark.scenario("NAME")), None without one."""
    marker = request.node.get_closest_marker("scenario")
    return scenario_copies(*marker.args) if marker else None


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "scenario(name): the test's data is scenarios/NAME.py's")


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the session as Ctrl-C does (pytest takes a SystemExit for a failed test)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def server_connection(env: Env, host: str, port: int):
    """A connection to the server's maintenance database, each statement its own transaction."""
    connection = connect(env, host, port)
    try:
        connection.autocommit = True
        yield connection
    finally:
        connection.close()


def migrations_digest() -> str:
    """Of migrations/ (versions and env.py): editing a migration makes a new template."""
    digest = hashlib.sha256()
    for path in sorted((PROJECT / "migrations").rglob("*.py")):
        digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def template_at_head(env: Env, server) -> str:
    """The template at the migrations' head, built under a lock if missing; older ones dropped."""
    return template(env, server, "", migrations_digest(), migrate)


def scenario_template(env: Env, server, name: str) -> str:
    """The template holding scenarios/NAME.py's data at head, built like the one at head."""
    head = template_at_head(env, server)
    key = hashlib.sha256(f"{head}\0{scenarios.digest(name)}".encode()).hexdigest()[:12]
    host, port = server.info.host, server.info.port

    def fill(database: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(
            "postgresql+psycopg2://", poolclass=NullPool,
            creator=lambda: connect(env, host, port, database),
        )  # fmt: skip
        scenarios.build(name, engine)

    return template(env, server, scenario_label(name), key, fill, copied_from=head)


def scenario_label(name: str) -> str:
    """What the names of a scenario's template and copies hold: short, for PostgreSQL's 63 bytes."""
    return f"s{hashlib.sha256(name.encode()).hexdigest()[:8]}_"


def template(env: Env, server, label: str, key: str, fill, copied_from: str | None = None) -> str:
    """Template `<prefix><label><key>`, made (from `copied_from`) and filled if missing; the
    same label's older templates dropped. Under a lock: the other processes wait, then find it."""
    from psycopg2 import sql

    prefix = clone_databases(env)[0]
    name = f"{prefix}{label}{key}"
    with server.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (prefix,))
        try:
            cursor.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() != (True,):
                drop(cursor, name)  # half made by a run that was killed
                create = "CREATE DATABASE {}" + (" TEMPLATE {}" if copied_from else "")
                names = [sql.Identifier(n) for n in (name, copied_from) if n]
                cursor.execute(sql.SQL(create).format(*names))
                try:
                    fill(name)
                except BaseException:
                    drop(cursor, name)
                    raise
                # No connection may open it again: a copy fails while one is open.
                options = "IS_TEMPLATE true ALLOW_CONNECTIONS false"
                cursor.execute(sql.SQL("ALTER DATABASE {} WITH " + options).format(names[0]))
                # A new head: every older template of the clone (scenarios too) is stale.
                older = re.compile(re.escape(prefix + label) + ("[0-9a-f]{12}" if label else ".*"))
                cursor.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)
                )
                for (found,) in cursor.fetchall():
                    if found != name and older.fullmatch(found):
                        drop(cursor, found)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (prefix,))
    return name


def migrate(name: str) -> None:
    """`flask db upgrade` of database `name`, as the image does; its connections closed after."""
    from app import create_app
    from app.startup import migrate_to_head

    with exported(APPLICATION_DB=name), create_app("testing").app_context():
        migrate_to_head()


def drop(cursor, name: str) -> None:
    """Drop database `name` if it exists, template or not, closing its connections."""
    from psycopg2 import sql

    cursor.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
    found = cursor.fetchone()
    if found is None:
        return
    if found[0]:
        cursor.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
    cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def copy_of(env: Env, host: str, port: int, template: str, suffix: str = "") -> Iterator[str]:
    """A database made from the template for this process, dropped on the way out."""
    from psycopg2 import sql

    name = f"{clone_databases(env)[1]}{os.getpid()}{suffix}"
    with server_connection(env, host, port) as server, server.cursor() as cursor:
        drop(cursor, name)
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        cursor.execute(query.format(sql.Identifier(name), sql.Identifier(template)))
    try:
        yield name
    finally:
        with server_connection(env, host, port) as server, server.cursor() as cursor:
            drop(cursor, name)


def remove_abandoned_copies(env: Env, server) -> None:
    """Drop the copies of this clone's killed pytest processes (not on another machine's server)."""
    if env.db_server == "external":
        return
    prefix = clone_databases(env)[1]
    with server.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,))
        for (name,) in cursor.fetchall():
            pid = name.removeprefix(prefix).split("_")[0]  # a scenario's copy: <pid>_<name>
            if pid.isdigit() and not process_alive(int(pid)):
                drop(cursor, name)
