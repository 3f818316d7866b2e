"""A throwaway copy of the project for the tests that run the real `inv`: its servers its own."""

import contextlib
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps import compose, environment
from steps.servers import local, local_files

PROJECT = Path(__file__).resolve().parents[2]
INV = [sys.executable, "-m", "invoke"]
TIMEOUT = 120
# What the outer `inv test` exported for this suite: an inner inv must load its own.
EXPORTED = {
    "APPLICATION_CONFIG", "FLASK_CONFIG", "FLASK_DEBUG", "FLASK_RUN_HOST", "FLASK_RUN_PORT",
    "SECRET_KEY", "WEB_IMAGE", "FLASK_SKIP_DOTENV", "DB_SERVER", "DATABASE_URL", "PGPASSWORD", "PGREQUIREAUTH", "PG_BIN", "HOST_UID", "HOST_GID",
    "INV_TEST_DATABASE",
    *environment.REQUIRED_VARIABLES,
}  # fmt: skip

SAMPLE_TESTS = """
import os, time
from pathlib import Path


def test_passing(database):
    assert database.session.execute(database.text("SELECT 1")).scalar() == 1


def test_failing():
    assert os.environ.get("SAMPLE_FAIL") != "1"


def test_waiting():
    marker = os.environ.get("SAMPLE_MARKER")
    if marker:
        Path(marker).write_text("started")
        time.sleep(60)
"""


def make_copy(root: Path) -> Path:
    """The project's code, env files, compose files and migrations, with three sample tests."""
    for name in (
        "tasks.py",
        "pyproject.toml",
        "wsgi.py",
        "gunicorn.conf.py",
        "requirements.txt",
        ".dockerignore",
    ):
        shutil.copy(PROJECT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.local.env", "_build")
    for name in (
        "app",
        "steps",
        "env",
        "migrations",
        "compose",
        "requirements",
        "scenarios",
        "docs",
    ):
        shutil.copytree(PROJECT / name, root / name, ignore=ignore)
    (root / "tests").mkdir()
    shutil.copy(PROJECT / "tests" / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "test_sample.py").write_text(SAMPLE_TESTS)
    return root


def clean_environ(db_server: str, **overrides: str) -> dict[str, str]:
    """This process's environment less what the outer `inv test` exported, plus `overrides`."""
    environ = {
        k: v for k, v in os.environ.items() if k not in EXPORTED and not k.startswith("COV_")
    }
    defaults = {
        "DB_SERVER": db_server,
        "PYTEST_ADDOPTS": "-p no:cacheprovider",
        "INVOKE_TEST_COVERAGE": "0",  # inv's test.coverage: these tests are about the tasks
        "INVOKE_TEST_WORKERS": "0",  # three sample tests: one process
    }
    return {**environ, **defaults, **overrides}


def run_inv(project: Path, db_server: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*INV, *args], cwd=project, env=clean_environ(db_server, **env),
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def start_inv(project: Path, db_server: str, *args: str, **env: str) -> subprocess.Popen:
    """`inv ARGS` in the background, its output merged, for tests that signal or poll it."""
    return subprocess.Popen(
        [*INV, *args], cwd=project, env=clean_environ(db_server, **env),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def on_a_terminal(
    project: Path,
    args: list[str],
    script: list[tuple[str, bytes]],
    cwd: Path | None = None,
    **env: str,
) -> tuple[int, str]:
    """(status, output) of `inv ARGS` on a terminal, typing each (text, keys) once text shows."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: inv, with the terminal as its stdin, stdout and stderr
        os.chdir(cwd or project)
        os.execve(sys.executable, [*INV, *args], clean_environ("local", TERM="dumb", **env))
    output, deadline = b"", time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            if script and script[0][0].encode() in output:
                keys = script.pop(0)[1]
                os.write(terminal, keys if isinstance(keys, bytes) else keys(output.decode()))
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    chunk = os.read(terminal, 65536)
                except OSError:  # the terminal's other end is closed: inv has ended
                    break
                if not chunk:
                    break
                output += chunk
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(terminal)
    return status, output.decode(errors="replace").replace("\r\n", "\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_marker(marker: Path, run: subprocess.Popen) -> None:
    """Until the sample test `test_waiting` has started inside `run`."""
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), run.communicate()[0] if run.poll() is not None else "no test started"


def fetch_when_up(url: str, still_running=lambda: True) -> bytes | None:
    """The body at `url` once something answers there, or None at the deadline."""
    deadline = time.monotonic() + TIMEOUT
    while still_running() and time.monotonic() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            time.sleep(0.1)
    return None


def skip_module_without_docker_engine() -> None:
    """Skip the calling test module where no Docker engine answers; fail instead under CI=true."""
    if not compose.docker_engine_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have a Docker engine (.ci/run runs provision)", pytrace=False)
        pytest.skip("no Docker engine answers (`docker version`)", allow_module_level=True)


def dev_password(project: Path, env: str = "development") -> str:
    """The random superuser password of the copy's local `env` cluster, from the steps' file."""
    return local.password_file(env, project).read_text().strip()


def local_socket(project: Path, env: str = "development") -> str:
    """The socket folder of the copy's running local `env` server: libpq's host (no TCP port)."""
    return local_files.socket_record(env, project).read_text().strip()


def module_copy(name: str):
    """A module's `project` fixture: one copy of the project, in a folder named `name`."""

    @pytest.fixture(scope="module")
    def project(tmp_path_factory):
        """A copy of the project; its local servers stopped and their data removed after."""
        with local_copy(tmp_path_factory.mktemp(name)) as root:
            yield root

    return project


def local_inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`inv ARGS` in the copy, with local servers."""
    return run_inv(project, "local", *args, **env)


@contextlib.contextmanager
def local_copy(root: Path) -> Iterator[Path]:
    """A copy of the project in `root`; its local servers stopped and their data removed after."""
    make_copy(root)
    try:
        yield root
    finally:
        for env in ("development", "testing"):
            if may_be_running(root, env):  # a db.down costs an interpreter; most need none
                run_inv(root, "local", "db.down", APPLICATION_CONFIG=env)
        shutil.rmtree(local_files.state_root(root), ignore_errors=True)


def may_be_running(root: Path, env: str) -> bool:
    """Whether the copy's `env` cluster left what a running one keeps."""
    return (local.cluster_home(env, root) / "data" / "postmaster.pid").exists()
