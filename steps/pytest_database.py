"""A pytest plugin: the tests' database, a copy of a template migrated once per migrations/.

The server (throwaway, or the warm one of `db.up`) starts through the steps while pytest collects.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from invoke import Exit

from steps import scenarios, templates
from steps.environment import Env, load_env
from steps.servers import TEST_DATABASE, database_for_tests


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
    with templates.copy_at_head(env, host, port) as name:
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
            copies[name] = stack.enter_context(templates.copy_of_scenario(env, host, port, name))
        return copies[name]

    with contextlib.ExitStack() as stack:
        yield copy


@pytest.fixture
def scenario_database(request, scenario_copies) -> str | None:
    """The test's copy of its scenario's data (@pytest.mark.scenario("NAME")), None without one."""
    marker = request.node.get_closest_marker("scenario")
    return scenario_copies(*marker.args) if marker else None


def pytest_runtest_setup(item) -> None:
    """A scenario marker names one scenario, on a test whose fixtures hold the database."""
    if marker := item.get_closest_marker("scenario"):
        if len(marker.args) != 1:
            pytest.fail('a scenario marker names one: @pytest.mark.scenario("ten_users")', False)
        if "scenario_database" not in item.fixturenames:
            pytest.fail("a test marked with a scenario uses `database` or `client`", False)


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
