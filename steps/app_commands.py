"""The app's own commands, with the environment exported: flask, migrations, gunicorn, pytest."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from steps import PROJECT
from steps.commands import fail, run
from steps.environment import Env, exported, where_to_set
from steps.postgres import LOOPBACK, applied_revision, port_is_free

# `python -m MODULE`, but a Ctrl-C while the module starts ends it without a traceback.
PYTHON_MODULE = [sys.executable, "-m", "steps.interruptible"]


def flask(*args: str, interactive: bool = False) -> int:
    return run([*PYTHON_MODULE, "flask", *args], interactive=interactive)


def migrate_to_head() -> None:
    """`flask db upgrade` under the advisory lock, as the image does before it serves."""
    if flask("prepare-database", "--no-create") != 0:
        fail("the migration failed (see above); fix it, then `inv db.upgrade`")


def migrations_below(env: Env, host: str, port: int) -> list:
    """The migration APPLICATION_DB is at and those below it, newest first (alembic's Scripts)."""
    from alembic.script import ScriptDirectory

    current = applied_revision(env, host, port)
    if current is None:
        return []
    return list(ScriptDirectory(str(PROJECT / "migrations")).iterate_revisions(current, "base"))


def file_name(script) -> str:
    """A migration by its file's name: `0002_case_insensitive_unique_email`."""
    return Path(script.path).stem


def migration_at(env: Env, host: str, port: int) -> str:
    """The migration APPLICATION_DB is at, by its file's name."""
    applied = migrations_below(env, host, port)
    return file_name(applied[0]) if applied else "no migration (no tables)"


def downgrade_question(env: Env, host: str, port: int, revision: str) -> str:
    """The question before `flask db downgrade REVISION`, naming the migrations' files."""
    database = f"the {env.name} database {env['APPLICATION_DB']} on {host}:{port}"
    applied = migrations_below(env, host, port)
    if not applied:
        fail(f"nothing to downgrade: {database} has no migration applied")
    below = [*(file_name(script) for script in applied), None]  # None: before the first
    ids = [script.revision for script in applied]
    steps_back = int(revision[1:]) if revision[:1] == "-" and revision[1:].isdigit() else None
    if steps_back is not None and 0 < steps_back < len(below):
        target = below[steps_back]
    elif revision == "base":
        target = None
    else:
        if revision not in ids[1:]:
            fail(
                f"cannot downgrade {database} to {revision!r}: it is at {below[0]}; give -N "
                f"(N steps back), base, or one of: {', '.join(below[1:-1]) or 'none'}"
            )
        target = below[ids.index(revision)]
    back_to = target or "before the first migration (no tables)"
    return f"downgrade {database} from {below[0]} back to {back_to}?"


def free_or_fail(env: Env, variable: str, default: int, host: str = LOOPBACK) -> int:
    """The port `variable` names (else `default`), refused when something listens there."""
    port = int(env.vars.get(variable) or default)
    if port_is_free(port, host):
        return port
    hint = where_to_set(env, variable)
    pid = listener_in(PROJECT, port)
    if pid:
        fail(
            f"port {port} is in use by this project's own app server (pid {pid}: an `inv dev` or "
            f"`inv serve` in another terminal?): stop it there with Ctrl-C, or {hint} for a second one"
        )
    fail(f"port {port} is already in use: {hint}")


def listener_in(folder: Path, port: int) -> int | None:
    """A process working in `folder` that listens on TCP `port`, as far as /proc shows (Linux)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    for process in Path("/proc").glob("[0-9]*") if sockets else ():
        with contextlib.suppress(OSError):
            if Path(os.readlink(process / "cwd")) == folder and any(
                os.readlink(fd) in sockets for fd in (process / "fd").iterdir()
            ):
                return int(process.name)
    return None


def gunicorn_command(port: int, *options: str) -> list[str]:
    """gunicorn as production runs it (gunicorn.conf.py), on loopback:port."""
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


def pytest_command(
    pattern: str | None = None, coverage: bool = True, workers: int = 0
) -> list[str]:
    """pytest, `-k pattern` if given, with coverage of app/ unless off, over `workers` processes."""
    cov = ["--cov=app", "--cov-report=term-missing:skip-covered"]
    args = [*PYTHON_MODULE, "pytest", *(cov if coverage else ["-p", "no:pytest_cov"])]
    if workers > 1:
        args += ["-p", "tests.e2e.longest_first", "--numprocesses", str(workers)]
        args += ["--dist", "loadfile"]
    return args + (["-k", pattern] if pattern else [])


@contextlib.contextmanager
def coverage_data_of_this_run() -> Iterator[None]:
    """Coverage's data in a folder of this run's, then moved to .coverage."""
    # pytest-cov combines every data file beside its own: two runs would take each other's.
    folder = Path(tempfile.mkdtemp(prefix=".coverage.run-", dir=PROJECT))
    try:
        with exported(COVERAGE_FILE=folder / ".coverage"):
            yield
    finally:
        with contextlib.suppress(OSError):
            os.replace(folder / ".coverage", PROJECT / ".coverage")
        shutil.rmtree(folder, ignore_errors=True)


def watch_command(command: list[str]) -> list[str]:
    """pytest_command under pytest-watcher: run now, then again whenever a file changes."""
    if not importlib.util.find_spec("pytest_watcher"):
        fail("pytest-watcher not found: `pip install -r requirements/development.txt`")
    # `**/`: watchdog matches a pattern against the whole path (pytest-watcher's *.py: nothing).
    watching = [str(PROJECT), "--now", "--patterns", "**/*.py"]
    # Under steps.interruptible too: Ctrl-C ends it with 130, not pytest-watcher's traceback.
    return [*PYTHON_MODULE, "pytest_watcher", *watching, "--runner", *command]


# pytest's options whose value is never a path: the word after them is left as it is.
NOT_PATHS = {"-k", "-m", "-p", "-o", "-W", "--maxfail", "--durations", "--tb"}


def paths_from(folder: Path, args: list[str]) -> list[str]:
    """pytest's arguments, the paths relative to `folder` made absolute: pytest runs elsewhere."""
    absolute = []
    for before, arg in zip(["", *args], args, strict=False):
        path = folder / arg.split("::")[0]
        known = before not in NOT_PATHS and not arg.startswith("-") and path.exists()
        absolute.append(str(folder / arg) if known else arg)
    return absolute


def debugger_pin() -> str:
    """A random PIN for Werkzeug's debugger (its own derives from facts any local user reads)."""
    digits = f"{secrets.randbelow(10**9):09d}"
    return "-".join(digits[i : i + 3] for i in range(0, 9, 3))
