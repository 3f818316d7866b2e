"""The tasks, run as a user runs them: the real `inv` in a subprocess, against real servers.

They run in a copy of the project (tasks, app, env, migrations and a few sample tests),
so the servers they start and stop are never the developer's own.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest

import tasks

PROJECT = Path(__file__).resolve().parent.parent
INV = [sys.executable, "-m", "invoke"]
TIMEOUT = 60
# What the outer `inv test` exported for this suite: an inner inv must load its own.
EXPORTED = {
    "APPLICATION_CONFIG", "FLASK_CONFIG", "FLASK_DEBUG", "FLASK_RUN_HOST", "FLASK_RUN_PORT",
    "SECRET_KEY", "DB_SERVER", "DATABASE_URL", "PGPASSWORD", "PG_BIN", *tasks.REQUIRED_VARIABLES,
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


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A throwaway copy of the project with sample tests; its servers stopped and data removed after."""
    root = tmp_path_factory.mktemp("project")
    for name in ("tasks.py", "pyproject.toml", "wsgi.py"):
        shutil.copy(PROJECT / name, root / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.local.env")
    for name in ("app", "env", "migrations"):
        shutil.copytree(PROJECT / name, root / name, ignore=ignore)
    (root / "tests").mkdir()
    shutil.copy(PROJECT / "tests" / "conftest.py", root / "tests" / "conftest.py")
    (root / "tests" / "test_sample.py").write_text(SAMPLE_TESTS)
    yield root
    for env in ("development", "testing"):
        inv(root, "db.down", APPLICATION_CONFIG=env)
    state = subprocess.run(
        [sys.executable, "-c", "import tasks; print(tasks.state_root())"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    shutil.rmtree(state, ignore_errors=True)


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment less what the outer `inv test` exported, plus `overrides`.

    Inner test runs skip coverage: it costs most of a second each, and these tests are
    about the tasks, not the sample tests' coverage.
    """
    environ = {
        k: v for k, v in os.environ.items() if k not in EXPORTED and not k.startswith("COV_")
    }
    return {**environ, "PYTEST_ADDOPTS": "--no-cov -p no:cacheprovider", **overrides}


def inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*INV, *args], cwd=project, env=clean_environ(**env),
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def throwaway_clusters() -> set[Path]:
    return set(tasks.scratch_root().glob("pglocal-test-*"))


def postgres_processes_in(folders: set[Path]) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmdline and any(str(folder) in cmdline for folder in folders):
            found.append(cmdline)
    return found


def stray_throwaway_servers(before: set[Path]) -> list[str]:
    """Server processes of throwaway clusters that were not there `before`."""
    return [
        cmdline
        for cmdline in postgres_processes_in({tasks.scratch_root() / "pglocal-test-"})
        if not any(str(folder) in cmdline for folder in before)
    ]


@pytest.fixture
def leaves_nothing_behind():
    """Asserts that the test's `inv test` runs left no throwaway cluster and no server process."""
    before = throwaway_clusters()
    yield
    assert throwaway_clusters() - before == set()
    assert stray_throwaway_servers(before) == []


@pytest.fixture
def dev_port(project):
    """A free port for the copy's development server, so the developer's own is never touched."""
    return str(free_port())


# --------------------------------------------------------------------------- inv test


def test_a_green_run_exits_zero(project, leaves_nothing_behind):
    result = inv(project, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_a_failing_test_makes_inv_test_fail(project, leaves_nothing_behind):
    result = inv(project, "test", SAMPLE_FAIL="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout


def test_pattern_selects_the_tests(project, leaves_nothing_behind):
    result = inv(project, "test", "--pattern", "passing", SAMPLE_FAIL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 2 deselected" in result.stdout


def test_arguments_after_the_dashes_keep_their_quoting(project, leaves_nothing_behind):
    result = inv(project, "test", "--", "-k", "passing or waiting", SAMPLE_FAIL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 1 deselected" in result.stdout


def test_two_runs_at_once_do_not_collide(project, leaves_nothing_behind):
    runs = [
        subprocess.Popen(
            [*INV, "test"], cwd=project, env=clean_environ(), stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=TIMEOUT)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_server_and_deletes_its_cluster(project, tmp_path, signum):
    before = throwaway_clusters()
    marker = tmp_path / "started"
    run = subprocess.Popen(
        [*INV, "test"], cwd=project, env=clean_environ(SAMPLE_MARKER=str(marker)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), run.communicate()[0] if run.poll() is not None else "no test started"
    during = throwaway_clusters() - before
    assert len(during) == 1 and postgres_processes_in(during)

    run.send_signal(signum)
    output = run.communicate(timeout=TIMEOUT)[0]

    assert run.returncode == (2 if signum == signal.SIGINT else 128 + signum), output
    assert throwaway_clusters() - before == set()
    assert stray_throwaway_servers(before) == []


def test_a_warm_test_server_is_used_and_left_running(project, leaves_nothing_behind):
    assert inv(project, "db.up", APPLICATION_CONFIG="testing").returncode == 0
    try:
        result = inv(project, "test")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warm testing PostgreSQL server" in result.stderr
        assert "running on" in inv(project, "db.status", APPLICATION_CONFIG="testing").stdout
    finally:
        inv(project, "db.down", APPLICATION_CONFIG="testing")


# --------------------------------------------------------------------------- the development server


def test_db_up_twice_is_harmless_and_down_twice_says_so(project, dev_port):
    first = inv(project, "db.up", POSTGRES_PORT=dev_port)
    second = inv(project, "db.up", POSTGRES_PORT=dev_port)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert f"up on 127.0.0.1:{dev_port}" in second.stderr
    assert "stopped" in inv(project, "db.down").stderr
    again = inv(project, "db.down")
    assert again.returncode == 0
    assert "not running: nothing to stop" in again.stderr


def test_development_data_survives_a_restart(project, dev_port):
    assert inv(project, "db.init", POSTGRES_PORT=dev_port).returncode == 0
    dsn = f"host=127.0.0.1 port={dev_port} user=postgres password=postgres dbname=application"
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (email) VALUES ('kept@example.com')")
    connection.close()
    assert inv(project, "db.down").returncode == 0
    assert inv(project, "db.up", POSTGRES_PORT=dev_port).returncode == 0
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT email FROM users")
        assert cursor.fetchall() == [("kept@example.com",)]
    connection.close()
    inv(project, "db.down")


def test_inv_dev_serves_the_app_and_ctrl_c_keeps_the_database(project, dev_port):
    web_port = free_port()
    run = subprocess.Popen(
        [*INV, "dev"], cwd=project, env=clean_environ(POSTGRES_PORT=dev_port, FLASK_RUN_PORT=str(web_port)),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        body = None
        deadline = time.monotonic() + TIMEOUT
        while body is None and run.poll() is None and time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=2).read()
            except OSError:
                time.sleep(0.1)
        assert body == b"Hello, World!"
    finally:
        run.send_signal(signal.SIGINT)
        output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode in (0, 130), output
    status = inv(project, "db.status")
    assert f"running on 127.0.0.1:{dev_port}" in status.stdout
    inv(project, "db.down")


def test_db_migrate_writes_a_migration_for_a_model_change(project, dev_port):
    models = project / "app" / "models.py"
    original = models.read_text()
    models.write_text(original + "\n    name = db.Column(db.String(80))\n")
    try:
        result = inv(project, "db.migrate", "-m", "add user name", POSTGRES_PORT=dev_port)
        assert result.returncode == 0, result.stderr
        path = project / result.stdout.strip().splitlines()[-1]
        assert path.name.endswith("_add_user_name.py")
        assert "add_column(sa.Column('name'" in path.read_text().replace('"', "'")
        path.unlink()
    finally:
        models.write_text(original)
        inv(project, "db.down")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["db.up"], {"APPLICATION_CONFIG": "staging"}, "unknown APPLICATION_CONFIG 'staging'"),
        (["db.up"], {"POSTGRES_USER": ""}, "missing variable(s) POSTGRES_USER"),
        (["test"], {"APPLICATION_DB": "test; DROP"}, "is not a plain identifier"),
        (["db.up"], {"DB_SERVER": "kubernetes"}, "unknown DB_SERVER 'kubernetes'"),
        (["db.up"], {"POSTGRES_PORT": "eighty"}, "is not a port number"),
        (["db.up"], {"PG_BIN": "/nonexistent"}, "PG_BIN=/nonexistent has no `postgres`"),
        (["db.reset"], {}, "no terminal to ask on: pass --yes"),
        (
            ["db.reset"],
            {"APPLICATION_CONFIG": "production", "SECRET_KEY": "x" * 32},
            "refusing in production",
        ),
        (
            ["db.downgrade"],
            {"APPLICATION_CONFIG": "production", "SECRET_KEY": "x" * 32},
            "refusing in production",
        ),
        (
            ["flask", "--", "routes"],
            {"APPLICATION_CONFIG": "production"},
            "SECRET_KEY is empty, a placeholder",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_failure(project, args, env, message):
    result = inv(project, *args, **env)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_a_missing_env_file_says_how_to_restore_it(project):
    env_file = project / "env" / "production.env"
    saved = env_file.read_text()
    env_file.unlink()
    try:
        result = inv(project, "db.status", APPLICATION_CONFIG="production")
    finally:
        env_file.write_text(saved)
    assert result.returncode == 1
    assert "missing env file env/production.env" in result.stderr


def test_a_malformed_env_line_is_named(project):
    local = project / "env" / "development.local.env"
    local.write_text("POSTGRES_PORT=5433\nthis is not a variable\n")
    try:
        result = inv(project, "db.status")
    finally:
        local.unlink()
    assert result.returncode == 1
    assert "env/development.local.env:2: cannot parse" in result.stderr


def test_a_busy_port_is_refused_before_anything_starts(project):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        result = inv(project, "db.up", POSTGRES_PORT=port)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "not running" in inv(project, "db.down").stderr


def test_a_wrong_password_fails_at_once_not_at_the_deadline(project):
    assert inv(project, "db.up", APPLICATION_CONFIG="testing").returncode == 0
    try:
        port = (
            inv(project, "db.status", APPLICATION_CONFIG="testing")
            .stdout.split("127.0.0.1:")[1]
            .split()[0]
        )
        started = time.monotonic()
        result = inv(
            project, "test", DB_SERVER="external", POSTGRES_PORT=port, POSTGRES_PASSWORD="wrong"
        )
        elapsed = time.monotonic() - started
    finally:
        inv(project, "db.down", APPLICATION_CONFIG="testing")
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr
    assert elapsed < tasks.READY_TIMEOUT / 2, "the wait retried a fatal error"


def test_no_server_binaries_anywhere_is_one_clear_error(monkeypatch):
    """No machine here lacks them, so their absence is mocked: each lookup finds nothing."""
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setattr(tasks.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(tasks.shutil, "which", lambda name: None)
    monkeypatch.setattr(tasks, "DEBIAN_SERVER_BINARIES", "/nonexistent/*/bin")
    with pytest.raises(tasks.Exit, match="no PostgreSQL server binaries found"):
        tasks.find_server_binaries()
