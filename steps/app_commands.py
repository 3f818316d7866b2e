"""The app's own commands, with the environment exported: flask, migrations, gunicorn, pytest."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time

from steps import PROJECT, warm_pytest
from steps.commands import (
    exit_code,
    fail,
    run,
    signals_forwarded,
    signals_held,
    start_foreground,
    to_child,
)
from steps.environment import Env
from steps.postgres import LOOPBACK, port_is_free
from steps.servers import TEST_DATABASE_SOCKET, database_for_tests, db_servers


def flask(*args: str) -> int:
    return run([sys.executable, "-m", "flask", *args])


def migrate_to_head() -> None:
    if flask("db", "upgrade") != 0:
        fail("the migration failed (see above); fix it, then `inv db.upgrade`")


def free_or_fail(port: int, variable: str, env: Env, host: str = LOOPBACK) -> int:
    if not port_is_free(port, host):
        fail(f"port {port} is already in use: set {variable} in env/{env.name}.local.env")
    return port


def web_port(env: Env) -> int:
    """WEB_PORT (default 8000), refused when something already listens there."""
    return free_or_fail(int(env.vars.get("WEB_PORT") or 8000), "WEB_PORT", env)


def gunicorn_command(port: int, *options: str) -> list[str]:
    """gunicorn as production runs it, with its settings from gunicorn.conf.py (workers:
    WEB_CONCURRENCY, connections each: GUNICORN_CONNECTIONS), on loopback:port."""
    return [
        sys.executable, "-m", "gunicorn", "--config", str(PROJECT / "gunicorn.conf.py"),
        "--bind", f"{LOOPBACK}:{port}", *options, "wsgi:app",
    ]  # fmt: skip


def wait_for_http(url: str, process, timeout: float = 60) -> None:
    """Until `url` answers 200, or fail when `process` (the server) exits or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"the server exited ({process.returncode}) before {url} answered (see above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    fail(f"{url} did not answer within {timeout:.0f} s")


PYTEST = [sys.executable, "-m", "pytest"]


def pytest_command(
    pattern: str | None = None, coverage: bool = True, workers: int = 0
) -> list[str]:
    """pytest on the suite, `-k pattern` if given, with coverage of app/ unless turned off,
    over `workers` processes if more than one (a module's tests stay in one)."""
    args = [*PYTEST, "-p", "steps.pytest_early_imports"]
    args += (
        ["--cov=app", "--cov-report=term-missing:skip-covered"]
        if coverage
        else ["-p", "no:pytest_cov"]
    )
    if workers > 1:
        args += ["-p", "steps.pytest_longest_first", "--numprocesses", str(workers)]
        args += ["--dist", "loadfile"]
    return args + (["-k", pattern] if pattern else [])


def tests_against_database(env: Env, command: list[str], ready_timeout: float) -> int:
    """pytest_command against the tests' database: the warm server at once (by the warm
    pytest when one runs), or a throwaway server started while pytest starts, so that its
    imports and the server's start overlap. tests/conftest.py gets the database's variables
    on a socket, and says there when the session is done with it: the server is then stopped
    while pytest writes its coverage report."""
    servers = db_servers(env, ready_timeout)
    if servers.running() is not None or warm_pytest.running():
        with database_for_tests(env, ready_timeout, servers):
            return pytest(command)
    ours, theirs = socket.socketpair()
    child: list[subprocess.Popen] = []
    with signals_forwarded(to_child(child)) as received, ours:
        try:
            environ = {**os.environ, TEST_DATABASE_SOCKET: str(theirs.fileno())}
            child.append(start_foreground(command, pass_fds=[theirs.fileno()], env=environ))
        finally:
            theirs.close()
        try:
            before = dict(os.environ)
            with database_for_tests(env, ready_timeout, servers):
                exported = {k: v for k, v in os.environ.items() if before.get(k) != v}
                with contextlib.suppress(OSError):  # unless pytest has ended (--help, say)
                    ours.sendall(json.dumps(exported).encode() + b"\n")
                    while ours.recv(64) not in (b"", b"done\n"):  # done, or pytest ended
                        pass
            code = child[0].wait()
        except BaseException:
            with signals_held():
                child[0].terminate()  # it would wait for a database that will not come
                child[0].wait()
            raise
    return exit_code(code, received)


def pytest(command: list[str]) -> int:
    """A pytest_command run in a fork of the warm pytest when one serves it (no second of
    imports), else in a new interpreter; its exit code either way."""
    code = warm_pytest.run_warm(command[len(PYTEST) :], cwd=PROJECT)
    return run(command) if code is None else code


def debugger_pin() -> str:
    """A PIN for Werkzeug's debugger that nobody can work out: by default it is derived from
    facts any local user can read (user name, paths, MAC address, machine id)."""
    digits = f"{secrets.randbelow(10**9):09d}"
    return "-".join(digits[i : i + 3] for i in range(0, 9, 3))
