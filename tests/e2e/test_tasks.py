"""`inv test` and plain pytest, as a user runs them, in a copy of the project."""

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project_copy import (
    INV,
    SAMPLE_TESTS,
    TIMEOUT,
    clean_environ,
    local_inv,
    module_copy,
    on_a_terminal,
    start_inv,
    wait_for_marker,
)

from steps.servers import local

project = module_copy("tasks")
inv = local_inv


def throwaway_clusters(project: Path) -> set[Path]:
    """The throwaway clusters that exist now for `project` (other runs may have their own)."""
    found = set()
    for home in local.scratch_root().glob("pglocal-test-*"):
        with contextlib.suppress(OSError):
            if (home / "owner").read_text().split()[1:] == [str(project)]:
                found.add(home)
    return found


def stray_throwaway_servers(project: Path) -> list[str]:
    """Server processes of `project`'s throwaway clusters, or of clusters already deleted."""
    ours = {str(home) for home in throwaway_clusters(project)}
    stray = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if "-D" in args and "pglocal-test-" in args[args.index("-D") + 1]:
                home = str(Path(args[args.index("-D") + 1]).parent)
                if home in ours or not Path(home).exists():
                    stray.append(" ".join(args))
    return stray


@pytest.fixture
def leaves_nothing_behind(project):
    """Asserts that the test's `inv test` runs left no throwaway cluster and no server process."""
    yield
    assert throwaway_clusters(project) == set()
    assert stray_throwaway_servers(project) == []


# --------------------------------------------------------------------------- inv test


def test_pattern_selects_the_tests_and_the_exit_code_is_pytest_s(project, leaves_nothing_behind):
    result = inv(project, "test", "--pattern", "passing or failing", SAMPLE_FAIL="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed, 1 deselected" in result.stdout


def test_arguments_after_the_dashes_keep_their_quoting(project, leaves_nothing_behind):
    result = inv(project, "test", "--", "-k", "passing or waiting", SAMPLE_FAIL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed, 1 deselected" in result.stdout


def test_the_end_to_end_suite_runs_over_workers_and_the_app_s_alone(project, leaves_nothing_behind):
    e2e = project / "tests" / "e2e"
    e2e.mkdir()
    (e2e / "test_sample_e2e.py").write_text(SAMPLE_TESTS)
    shutil.copy(Path(__file__).with_name("longest_first.py"), e2e)  # what --e2e loads
    try:
        result = inv(project, "test", "--e2e", INVOKE_TEST_WORKERS="2", SAMPLE_FAIL="1")
        app_only = inv(project, "test", SAMPLE_FAIL="1")
    finally:
        shutil.rmtree(e2e)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 workers [3 items]" in result.stdout
    assert "1 failed, 2 passed" in result.stdout
    assert "test_sample_e2e.py" not in app_only.stdout
    assert "1 failed, 2 passed" in app_only.stdout


def test_two_runs_at_once_do_not_collide(project, leaves_nothing_behind):
    runs = [start_inv(project, "local", "test") for _ in range(2)]
    outputs = [run.communicate(timeout=TIMEOUT)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs  # a green run exits 0
    assert all("3 passed" in output for output in outputs), outputs


def test_a_run_with_coverage_leaves_the_data_of_another_run_alone(project, leaves_nothing_behind):
    """By default pytest-cov combines, and deletes, every data file beside its own."""
    from coverage import CoverageData

    other = CoverageData(basename=str(project / ".coverage.another-run.1.1"))
    other.add_lines({str(project / "app" / "__init__.py"): [1]})
    other.write()
    try:
        result = inv(project, "test", INVOKE_TEST_COVERAGE="1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "TOTAL" in result.stdout
        assert Path(other.data_filename()).is_file(), "this run combined another run's data"
        assert (project / ".coverage").is_file()
        assert [path.name for path in project.glob(".coverage.*")] == [".coverage.another-run.1.1"]
    finally:
        Path(other.data_filename()).unlink(missing_ok=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_server_and_deletes_its_cluster(project, tmp_path, signum):
    marker = tmp_path / "started"
    run = start_inv(project, "local", "test", SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    assert len(throwaway_clusters(project)) == 1
    assert len(stray_throwaway_servers(project)) >= 1, "its server should be running now"

    run.send_signal(signum)
    output = run.communicate(timeout=TIMEOUT)[0]

    assert run.returncode == 128 + signum, output
    assert throwaway_clusters(project) == set()
    assert stray_throwaway_servers(project) == []


def test_a_killed_inv_test_leaves_nothing_running_past_the_next_seconds(project, tmp_path):
    """SIGKILL gives inv no chance: pytest, told by the kernel (PR_SET_PDEATHSIG), cleans up."""
    marker = tmp_path / "started"
    run = start_inv(project, "local", "test", SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    run.kill()
    run.wait()  # not its output: pytest holds that open while it runs
    deadline = time.monotonic() + 5
    while throwaway_clusters(project) or stray_throwaway_servers(project):
        assert time.monotonic() < deadline, "left running after inv was killed"
        time.sleep(0.1)
    run.communicate(timeout=TIMEOUT)


def test_ctrl_c_typed_while_pytest_starts_is_one_line_and_130(project, leaves_nothing_behind):
    status, output = on_a_terminal(project, ["test"], [("throwaway testing PostgreSQL", b"\x03")])
    assert status == 130, output
    assert "Traceback" not in output
    after = output.split("throwaway testing PostgreSQL", 1)[1].strip().splitlines()[1:]
    assert len(after) <= 7, output  # ^C, and pytest's own summary of a KeyboardInterrupt
    assert after[-1].endswith("inv: interrupted; its commands and throwaway servers are stopped")


def test_watch_runs_the_tests_again_on_a_save_until_ctrl_c(project, leaves_nothing_behind):
    sample = project / "tests" / "test_sample.py"
    original = sample.read_text()

    def save_a_failing_test(output: str) -> bytes:
        sample.write_text(original + "\n\ndef test_new():\n    assert False\n")
        return b""

    try:
        status, output = on_a_terminal(
            project, ["test", "--watch", "--", "tests/test_sample.py"],
            [("Press w to show menu", save_a_failing_test), ("1 failed, 3 passed", b"\x03")],
        )  # fmt: skip
    finally:
        sample.write_text(original)
    assert "1 failed, 3 passed" in output, output
    assert status in (0, 130), output


def test_paths_after_the_dashes_are_relative_to_the_folder_the_user_is_in(
    project, leaves_nothing_behind
):
    result = subprocess.run(
        [*INV, "test", "--", "test_sample.py::test_passing"], cwd=project / "tests",
        env=clean_environ("local"), capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# --------------------------------------------------------------------------- plain pytest


def start_pytest(project: Path, **env: str) -> subprocess.Popen:
    """Plain `pytest` in the copy, as a terminal or an IDE runs it: no variables from inv."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest"], cwd=project, env=clean_environ("local", **env),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_plain_pytest_starts_its_own_server_and_stops_it_after_a_failure(
    project, leaves_nothing_behind
):
    run = start_pytest(project, SAMPLE_FAIL="1")
    output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode == 1, output
    assert "1 failed, 2 passed" in output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_plain_pytest_stops_its_server(project, tmp_path, signum):
    marker = tmp_path / "started"
    run = start_pytest(project, SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    assert len(throwaway_clusters(project)) == 1

    run.send_signal(signum)
    output = run.communicate(timeout=TIMEOUT)[0]

    assert run.returncode == 2, output  # pytest's "interrupted"
    assert throwaway_clusters(project) == set()
    assert stray_throwaway_servers(project) == []
