"""The warm pytest (steps/warm_pytest.py), as a user meets it: `APPLICATION_CONFIG=testing
inv db.up`, then `inv test` again and again, editing code in between; and the cold path's
pytest, started while its throwaway server starts.

In a copy of the project, against real local servers; a library of the copy's own lives
outside it (on PYTHONPATH), so that a test can change a preloaded library file.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project_copy import TIMEOUT, clean_environ, local_copy, run_inv, start_inv, wait_for_marker

from steps import warm_pytest

IN_A_FORK = "pytest runs in a fork of the warm pytest"
PROBE_TEST = """
import os

import pytest

import app.probe
import probe_library


def test_the_code_is_the_latest():
    if "APP_VALUE" not in os.environ:
        pytest.skip("run by tests/e2e/test_warm_pytest.py's probe()")
    assert app.probe.VALUE == os.environ["APP_VALUE"]
    assert probe_library.VALUE == os.environ["LIBRARY_VALUE"]
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with a probe module in app/ and a probe library outside it."""
    root = tmp_path_factory.mktemp("warm")
    (root / "project").mkdir()
    with local_copy(root / "project") as project:
        (root / "library").mkdir()
        write(root / "library" / "probe_library.py", "VALUE = '1'\n")
        write(project / "app" / "probe.py", "VALUE = '1'\n")
        (project / "tests" / "test_probe.py").write_text(PROBE_TEST)
        yield project


def write(path: Path, text: str) -> None:
    """A new version of a source file, with a later modification time than the last one
    (Python's bytecode cache goes by time and size: an edit in the same second could hide)."""
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(time.time_ns(), previous + 2_000_000_000)
    os.utime(path, ns=(later, later))


def inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    library = str(project.parent / "library")
    return run_inv(project, "local", *args, APPLICATION_CONFIG="testing", PYTHONPATH=library, **env)


def start(project: Path, *args: str, **env: str) -> subprocess.Popen:
    library = str(project.parent / "library")
    return start_inv(
        project, "local", *args, APPLICATION_CONFIG="testing", PYTHONPATH=library, **env
    )


def probe(project: Path, app_value: str = "1", library_value: str = "1"):
    return inv(
        project,
        "test",
        "--",
        "tests/test_probe.py",
        APP_VALUE=app_value,
        LIBRARY_VALUE=library_value,
    )


def processes_in(project: Path) -> dict[int, list[str]]:
    """pid -> command line of the processes whose folder is the copy (its inv, pytest, ...)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")) == project:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
    return found


def warm_pytest_processes(project: Path) -> dict[int, list[str]]:
    """The copy's warm pytest and its forks (their command line names the copy's folder)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, UnicodeDecodeError):
            continue
        if "steps.warm_pytest_server" in args and str(warm_pytest.folder_path(project)) in args:
            found[int(proc.name)] = args
    return found


def forks(project: Path) -> set[int]:
    """The forks serving runs: warm pytest processes whose parent is one too."""
    processes = warm_pytest_processes(project)
    children = set()
    for pid in processes:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent in processes:
            children.add(pid)
    return children


@pytest.fixture(scope="module")
def warm(project):
    """The copy's warm test server and warm pytest, stopped after the module."""
    up = inv(project, "db.up")
    assert up.returncode == 0, up.stderr
    assert "a warm pytest runs too" in up.stderr
    try:
        yield project
    finally:
        down = inv(project, "db.down")
        assert "stopped the warm pytest" in down.stderr
        assert warm_pytest_processes(project) == {}, "db.down left the warm pytest running"


def test_runs_are_forks_with_pytest_s_exit_codes(warm):
    first = inv(warm, "test")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "warm testing PostgreSQL server" in first.stderr  # and left running: db.status below
    assert IN_A_FORK in first.stderr
    assert "3 passed" in first.stdout

    failing = inv(warm, "test", SAMPLE_FAIL="1")
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert IN_A_FORK in failing.stderr
    assert "1 failed, 2 passed" in failing.stdout

    usage = inv(warm, "test", "--", "--no-such-option")
    assert usage.returncode == 4, usage.stdout + usage.stderr
    assert "unrecognized arguments: --no-such-option" in usage.stderr
    status = inv(warm, "db.status").stdout
    assert "running on" in status and "warm pytest: running" in status, status


def test_an_edit_to_the_project_shows_in_the_next_run(warm):
    assert probe(warm).returncode == 0
    write(warm / "app" / "probe.py", "VALUE = 'edited'\n")
    edited = probe(warm, app_value="edited")
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert IN_A_FORK in edited.stderr


def test_a_changed_library_makes_it_step_aside_and_start_again(warm):
    app_value = (warm / "app" / "probe.py").read_text().split("'")[1]
    assert probe(warm, app_value).returncode == 0  # the library is learned: preloaded from now on
    served = probe(warm, app_value)
    assert served.returncode == 0 and IN_A_FORK in served.stderr, served.stdout + served.stderr
    library = warm.parent / "library" / "probe_library.py"

    write(library, "VALUE = 'upgraded'\n")
    aside = probe(warm, app_value, library_value="upgraded")
    assert aside.returncode == 0, aside.stdout + aside.stderr
    assert f"the warm pytest stepped aside ({library} changed since it started)" in aside.stderr
    assert IN_A_FORK not in aside.stderr

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        again = probe(warm, app_value, library_value="upgraded")
        assert again.returncode == 0, again.stdout + again.stderr
        if IN_A_FORK in again.stderr:
            break
        time.sleep(0.5)  # the new one is still importing
    else:
        pytest.fail("no warm pytest served a run after it restarted")
    assert len(warm_pytest_processes(warm)) == 1


def test_other_python_variables_are_served_the_ordinary_way(warm):
    run = inv(warm, "test", PYTHONHASHSEED="123")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cannot serve this run (PYTHON* variables differ from when it started)" in run.stderr
    assert IN_A_FORK not in run.stderr


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, None)],
)
def test_a_signal_to_inv_ends_its_fork_and_only_that(warm, tmp_path, signum, code):
    marker = tmp_path / "started"
    run = start(warm, "test", SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    assert len(forks(warm)) == 1

    run.send_signal(signum)
    output = run.communicate(timeout=TIMEOUT)[0]

    if code is not None:
        assert run.returncode == code, output
    deadline = time.monotonic() + 10
    while forks(warm) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forks(warm) == set(), "the run's fork outlived its inv"
    assert len(warm_pytest_processes(warm)) == 1, "the warm pytest itself should keep running"


def test_its_folder_and_socket_are_private(warm):
    folder = warm_pytest.folder_path(warm)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / warm_pytest.SOCKET).stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_uid == os.geteuid()

    folder.chmod(0o755)  # as if someone loosened it: it is not trusted any more
    try:
        loose = inv(warm, "test")
        assert loose.returncode == 0, loose.stdout + loose.stderr
        assert IN_A_FORK not in loose.stderr
    finally:
        folder.chmod(0o700)
    assert IN_A_FORK in inv(warm, "test").stderr


def test_a_cold_run_whose_server_fails_stops_the_pytest_it_started(tmp_path):
    """pytest starts beside the throwaway server; when that server cannot start, inv says
    why in one line and the pytest waiting for it is stopped, not left behind."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "postgres").write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 18.0'\n")
    (bindir / "initdb").write_text("#!/bin/sh\nsleep 1\necho 'initdb: no, not today' >&2\nexit 1\n")
    for binary in bindir.iterdir():
        binary.chmod(0o755)
    (tmp_path / "cold").mkdir()
    with local_copy(tmp_path / "cold") as project:
        result = run_inv(project, "local", "test", PG_BIN=str(bindir))
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert "initdb failed" in result.stderr
        assert "passed" not in result.stdout
        assert processes_in(project) == {}, "the pytest started beside the server was left"


def test_neither_the_early_imports_nor_a_fork_change_a_coverage_figure(warm):
    """`inv test` loads steps.pytest_early_imports before coverage starts, and its fork has
    the libraries preloaded: app/'s own lines are measured as a plain pytest, with neither,
    measures them. (The app once asked whether flask_migrate was imported, and the warm
    pytest had it imported.)"""
    with_coverage = {"PYTEST_ADDOPTS": "-p no:cacheprovider"}
    tables, said = [], []
    # The first run teaches the warm pytest what to preload (and may migrate the database:
    # its figures are not compared); then a fork, and the ordinary way.
    for run_env in ({}, {}, {"PYTHONHASHSEED": "123"}):
        run = inv(warm, "test", "--", "--cov-report=term-missing", **with_coverage, **run_env)
        assert run.returncode == 0, run.stdout + run.stderr
        tables.append(app_lines(run.stdout))
        said.append(run.stderr)
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "--cov=app", "--cov-report=term-missing"], cwd=warm,
        env=clean_environ("local", **with_coverage, PYTHONPATH=str(warm.parent / "library")),
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout + plain.stderr
    tables.append(app_lines(plain.stdout))
    assert IN_A_FORK in said[1] and IN_A_FORK not in said[2]
    assert len(tables[0]) > 5
    assert tables[1] == tables[2] == tables[3]  # a fork, the ordinary way, no early imports


def app_lines(report: str) -> list[str]:
    """The coverage table's lines for app/ (the rest of the output differs by run)."""
    return [line for line in report.splitlines() if line.startswith("app/")]
