"""Measure what PostgreSQL costs the test suite, as a Markdown table for the README.

1. The server overhead of a cold `inv test`: all it does but pytest's own run (load
   env/testing.env, throwaway server up and ready, create the test database, server down),
   as the wall time of a fresh `python -c` subprocess, for DB_SERVER=local and, when a
   Docker engine answers, DB_SERVER=compose (set explicitly: `auto` picks one of them).
   Beside each: its server steps timed in this process; beside local, a subprocess that
   only imports tasks (interpreter + import).
2. initdb of a new cluster versus the `cp -a` copy of the cached template cluster.
3. Per-test isolation: what the `database` fixture (connect, begin, savepoint session,
   rollback) adds to a test, from 500 tests using it versus 500 using `app` only, on a
   local server.

Run it from the project root with the venv active; it takes a minute or two:

    python benchmarks/server_overhead.py [--runs N] [--only local|compose|all]

`--only local` measures 1 for local, 2 and 3; `--only compose` measures 1 for compose.
It starts only throwaway servers and Compose projects, as `inv test` does, and refuses to
run while a warm testing server (`APPLICATION_CONFIG=testing DB_SERVER=local inv db.up`, or
`DB_SERVER=compose`) is up, since `inv test` would use that one. What it starts (servers,
projects, temporary folders) is stopped and deleted on the way out, Ctrl-C and SIGTERM
included. pytest does not collect this file: its name does not start with test_.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from invoke import Exit

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from steps import commands, compose, environment, local, postgres, servers  # noqa: E402

COPY_RUNS = 5
PYTEST_RUNS = 3
TESTS = 500
# An interrupted child first gets time to end by itself (a Ctrl-C in the terminal reached
# it too), then time to clean up after SIGTERM: a `python -c` one stops its own server.
CHILD_GRACE = 3.0
CHILD_CLEANUP = 30.0
# What load_env reads from the process environment over env/testing.env: removed, so that
# the measured runs load the file themselves, as a fresh `inv test` does. DB_SERVER is then
# set for each measurement.
LOADED_NAMES = ("APPLICATION_CONFIG", "APPLICATION_DB", "DB_SERVER")
LOADED_PREFIXES = ("POSTGRES_", "FLASK_")

# The `test` task of tasks.py, minus pytest.
COLD_TEST = """\
import tasks
from steps import environment, postgres, servers
env = environment.load_env("testing")
with servers.database_server(env, throwaway=True) as (host, port):
    postgres.create_database(env, host, port)
"""
IMPORT_ONLY = "import tasks"


class BenchmarkError(Exception):
    """A reason not to go on, told in one line."""


class Row(NamedTuple):
    measurement: str
    runs: str
    time: str


class ClusterTools(NamedTuple):
    """What the tasks use to make a cluster: binaries, the account they run as, the template."""

    bindir: Path
    account: pwd.struct_passwd | None
    template: Path


# --------------------------------------------------------------------------- environment, safety


def loaded_by_tasks(name: str) -> bool:
    return name in LOADED_NAMES or name.startswith(LOADED_PREFIXES)


def scrub_environment() -> dict[str, str]:
    """Remove the variables load_env would take over env/testing.env; a copy of the rest."""
    for name in [name for name in os.environ if loaded_by_tasks(name)]:
        del os.environ[name]
    return dict(os.environ)


def with_db_server(env: environment.Env, db_server: str) -> environment.Env:
    """The loaded env/testing.env, as if DB_SERVER=`db_server` had been in the environment."""
    return dataclasses.replace(env, vars={**env.vars, "DB_SERVER": db_server})


def refuse_warm_server(env: environment.Env) -> None:
    """A warm testing server would be used instead of a throwaway one: never touch it."""
    if servers.db_servers(env).running() is not None:
        raise BenchmarkError(
            f"a warm testing server is running: run `APPLICATION_CONFIG=testing DB_SERVER={env.db_server} inv db.down` first"
        )


@contextlib.contextmanager
def throwaway_database(env: environment.Env) -> Iterator[tuple[str, int]]:
    """A throwaway server with the test database, as `inv test` has before pytest starts."""
    refuse_warm_server(env)
    with servers.database_server(env, throwaway=True) as (host, port):
        postgres.create_database(env, host, port)
        yield host, port


@contextlib.contextmanager
def scratch_dir(account: pwd.struct_passwd | None) -> Iterator[Path]:
    """An empty folder on tmpfs that the server's account may write in, deleted afterwards."""
    path = Path(tempfile.mkdtemp(prefix="benchmark-", dir=local.scratch_root()))
    try:
        yield local.give_to(path, account)
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- running and timing


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def reaped(process: subprocess.Popen, timeout: float | None) -> bool:
    """Whether the process ended within `timeout` seconds (its output is discarded)."""
    try:
        process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def stop_child(process: subprocess.Popen) -> None:
    """Let an interrupted child end and clean up; ask it to stop, kill it only if it hangs.

    No signal is sent at once: a second one could cut short the cleanup of the first.
    """
    with commands.signals_held():
        if reaped(process, CHILD_GRACE):
            return
        process.terminate()
        if reaped(process, CHILD_CLEANUP):
            return
        process.kill()
        reaped(process, None)


def run_timed(
    args: list, leftovers: Callable[[int], None] | None = None, **options: object
) -> float:
    """Run a command to its end and return its wall time in seconds; a failure raises.

    leftovers(pid) removes what an interrupted command may have left, once it has ended.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **options,
    )
    try:
        output, _ = process.communicate()
    except BaseException:
        stop_child(process)
        if leftovers:
            with commands.signals_held():
                leftovers(process.pid)
        raise
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise BenchmarkError(
            f"{Path(args[0]).name} exited with {process.returncode}: {last_line(output)}"
        )
    return elapsed


def time_python(
    code: str, environ: dict[str, str], leftovers: Callable[[int], None] | None = None
) -> float:
    """Wall time of a fresh interpreter running `code` in the project root."""
    return run_timed([sys.executable, "-c", code], leftovers, cwd=PROJECT, env=environ)


def progress(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- 1. cold `inv test`


def cold_test_label(db_server: str) -> str:
    return f"Cold `inv test` overhead (DB_SERVER={db_server}), no pytest"


def child_projects(env: environment.Env) -> Callable[[int], None]:
    """What removes the throwaway projects of an interrupted `python -c` child, found by its
    pid in their name: what it could not remove itself (killed, or `compose up` cut short)."""

    def remove(pid: int) -> None:
        prefix = compose.compose_project(env, f"-{pid}-")
        listing = subprocess.run(
            ["docker", "ps", "--all", "--filter", "label=com.docker.compose.project",
             "--format", '{{.Label "com.docker.compose.project"}}'],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        for project in {name for name in listing.split() if name.startswith(prefix)}:
            compose.remove_compose_project(env, project)

    return remove


def time_cold_test(env: environment.Env, environ: dict[str, str]) -> float:
    refuse_warm_server(env)
    leftovers = child_projects(env) if env.db_server == "compose" else None
    return time_python(COLD_TEST, environ, leftovers)


def measure_cold_test(env: environment.Env, environ: dict[str, str], runs: int) -> Row:
    """The cold `inv test` overhead with env's DB_SERVER, over `runs` fresh subprocesses."""
    environ = {**environ, "DB_SERVER": env.db_server}
    progress(f"cold `inv test` (DB_SERVER={env.db_server}) without pytest, {runs} runs")
    cold = [time_cold_test(env, environ) for _ in range(runs)]
    return Row(cold_test_label(env.db_server), str(runs), median_max(cold))


def time_local_steps(env: environment.Env, n: int) -> dict[str, float]:
    """Seconds of each step of a throwaway local server, in-process."""
    refuse_warm_server(env)
    # Muted: the `inv: throwaway ...` line database_server says, once a run.
    with contextlib.ExitStack() as stack, contextlib.redirect_stderr(io.StringIO()):
        start = time.perf_counter()
        host, port = stack.enter_context(servers.database_server(env, throwaway=True))
        up = time.perf_counter()
        postgres.create_database(env, host, port)
        created = time.perf_counter()
        stack.close()
        down = time.perf_counter()
    return {
        "server up, incl. wait until ready": up - start,
        "create the test database": created - up,
        "server down and deleted": down - created,
    }


def time_compose_steps(env: environment.Env, n: int) -> dict[str, float]:
    """Seconds of each step of a throwaway Compose project (ComposeServers.throwaway), in-process.

    The project is named after this process and `n`, never after a real one.
    """
    refuse_warm_server(env)
    project = compose.compose_project(env, f"-bench-{os.getpid()}-{n}")
    try:
        start = time.perf_counter()
        compose.compose_or_fail(env, project, "up", "--detach", "db")
        port = compose.compose_db_port(project)
        if port is None:
            raise BenchmarkError(f"the `db` container of {project} did not stay up")
        up = time.perf_counter()
        alive = compose.compose_db_alive(env, project)
        postgres.wait_until_ready(env, postgres.LOOPBACK, port, timeout=60, alive=alive)
        ready = time.perf_counter()
        postgres.create_database(env, postgres.LOOPBACK, port)
        created = time.perf_counter()
    finally:
        with commands.signals_held():
            compose.remove_compose_project(env, project)
    removed = time.perf_counter()
    return {
        "`docker compose up -d db`": up - start,
        "wait until a connection succeeds": ready - up,
        "create the test database": created - ready,
        "project removed": removed - created,
    }


def measure_steps(
    env: environment.Env, runs: int, time_steps: Callable[[environment.Env, int], dict[str, float]]
) -> list[Row]:
    """The median of each server step over `runs` runs; time_steps(env, n) times run n."""
    progress(f"the DB_SERVER={env.db_server} server steps in-process, {runs} runs")
    samples = [time_steps(env, n) for n in range(runs)]
    return [
        Row(f"... {step} (in-process)", str(runs), median_ms([run[step] for run in samples]))
        for step in samples[0]
    ]


def measure_local_cold_test(env: environment.Env, environ: dict[str, str], runs: int) -> list[Row]:
    cold = measure_cold_test(env, environ, runs)
    progress(f"`import tasks` only, {runs} runs")
    imports = [time_python(IMPORT_ONLY, environ) for _ in range(runs)]
    return [
        cold,
        Row("... of which `python -c 'import tasks'`", str(runs), median_max(imports)),
        *measure_steps(env, runs, time_local_steps),
    ]


def measure_compose_cold_test(
    env: environment.Env, environ: dict[str, str], runs: int
) -> list[Row]:
    return [
        measure_cold_test(env, environ, runs),
        *measure_steps(env, runs, time_compose_steps),
    ]


# --------------------------------------------------------------------------- 2. initdb versus copy


def cluster_tools(env: environment.Env) -> ClusterTools:
    """The binaries and account the tasks use, and the cached template (made now if missing)."""
    account = local.server_account()
    bindir = local.reachable_binaries(local.find_server_binaries(), account)
    return ClusterTools(bindir, account, local.template_cluster(env, bindir, account))


def time_initdb(env: environment.Env, tools: ClusterTools) -> float:
    """A bare initdb into a new folder on tmpfs, with the options template_cluster uses."""
    with scratch_dir(tools.account) as work:
        password = work / "password"
        password.write_text(env["POSTGRES_PASSWORD"] + "\n")
        local.give_to(password, tools.account)
        return run_timed(
            [tools.bindir / "initdb", "-D", work / "data", "-U", env["POSTGRES_USER"],
             f"--pwfile={password}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
             "--no-sync"],
            **local.as_account(tools.account),
        )  # fmt: skip


def time_template_copy(tools: ClusterTools) -> float:
    """The copy make_cluster does of the cached template into a new folder on tmpfs."""
    with scratch_dir(tools.account) as work:
        return run_timed(
            ["cp", "-a", tools.template / "data", work / "data"], **local.as_account(tools.account)
        )


def measure_cluster_creation(env: environment.Env, tools: ClusterTools) -> list[Row]:
    progress(f"initdb versus a template copy, {COPY_RUNS} runs each")
    initdb = [time_initdb(env, tools) for _ in range(COPY_RUNS)]
    copy = [time_template_copy(tools) for _ in range(COPY_RUNS)]
    return [
        Row("initdb of a new cluster (tmpfs)", str(COPY_RUNS), median_ms(initdb)),
        Row("`cp -a` of the cached template cluster (tmpfs)", str(COPY_RUNS), median_ms(copy)),
    ]


# --------------------------------------------------------------------------- 3. per-test isolation


def write_suite(folder: Path, fixture: str) -> Path:
    """A copy of the project's conftest and TESTS empty tests that each use `fixture`."""
    folder.mkdir()
    shutil.copy(PROJECT / "tests" / "conftest.py", folder / "conftest.py")
    tests = "\n\n".join(f"def test_{n}({fixture}):\n    pass\n" for n in range(TESTS))
    (folder / "test_benchmark.py").write_text(tests)
    return folder


def time_pytest(suite: Path) -> float:
    """One pytest run of `suite`, outside the project's configuration, `app` importable."""
    python_path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    return run_timed(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", suite, "-c", "/dev/null", suite],
        cwd=PROJECT, env={**os.environ, "PYTHONPATH": python_path},
    )  # fmt: skip


def best_times(suites: dict[str, Path]) -> dict[str, float]:
    """The best of PYTEST_RUNS runs of each suite, interleaved so that noise hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in suites}
    for _ in range(PYTEST_RUNS):
        for name, suite in suites.items():
            times[name].append(time_pytest(suite))
    return {name: min(runs) for name, runs in times.items()}


def measure_isolation(env: environment.Env) -> list[Row]:
    progress(f"{TESTS} tests with `database` versus `app`, best of {PYTEST_RUNS}")
    with throwaway_database(env), tempfile.TemporaryDirectory(prefix="benchmark-") as root:
        suites = {name: write_suite(Path(root) / name, name) for name in ("app", "database")}
        best = best_times(suites)
    per_test = (best["database"] - best["app"]) / TESTS
    runs = f"best of {PYTEST_RUNS}"
    return [
        Row(f"pytest, {TESTS} tests using `app` only", runs, f"{best['app']:.2f} s"),
        Row(f"pytest, {TESTS} tests using `database`", runs, f"{best['database']:.2f} s"),
        Row("Per-test cost of the `database` fixture", runs, f"{per_test * 1000:.2f} ms"),
    ]


# --------------------------------------------------------------------------- the table


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def median_ms(samples: list[float] | tuple[float, ...]) -> str:
    return f"{milliseconds(statistics.median(samples))} median"


def median_max(samples: list[float]) -> str:
    return f"{median_ms(samples)}, {milliseconds(max(samples))} max"


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows as a Markdown table, its columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=10, help="runs of the cold `inv test` measures (default: 10)"
    )
    parser.add_argument(
        "--only",
        choices=("local", "compose", "all"),
        default="all",
        help="what to measure: the local server (1, 2, 3), Compose (1) or all (default: all)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def benchmark(runs: int, only: str) -> list[Row]:
    """The measurements `only` selects, as table rows."""
    environ = scrub_environment()
    testing = environment.load_env("testing")
    local_env, compose_env = with_db_server(testing, "local"), with_db_server(testing, "compose")
    wants_compose = only in ("compose", "all")
    measures_local = only in ("local", "all")
    measures_compose = wants_compose and compose.docker_engine_answers()
    # Refused now rather than minutes in.
    if measures_local:
        refuse_warm_server(local_env)
    if measures_compose:
        refuse_warm_server(compose_env)
    rows: list[Row] = []
    if measures_local:
        tools = cluster_tools(local_env)  # made before timing anything: a cold run finds it cached
        rows += measure_local_cold_test(local_env, environ, runs)
    if measures_compose:
        rows += measure_compose_cold_test(compose_env, environ, runs)
    elif wants_compose:
        rows.append(Row(cold_test_label("compose"), "-", "skipped: no Docker engine"))
    if measures_local:
        rows += [*measure_cluster_creation(local_env, tools), *measure_isolation(local_env)]
    return rows


@contextlib.contextmanager
def exits_on_failure(progress: Callable[[str], None]) -> Iterator[None]:
    """A reason to stop becomes its one line and an exit status (SystemExit)."""
    try:
        yield
    except BenchmarkError as error:
        progress(str(error))
        raise SystemExit(1) from None
    except Exit as error:  # a tasks step failed, its message already says why
        print(error.message, file=sys.stderr)
        raise SystemExit(error.code or 1) from None
    except KeyboardInterrupt:
        progress("interrupted")
        raise SystemExit(130) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that `finally` blocks stop what was started.
    with commands.sigterm_unwinds(), exits_on_failure(progress):
        rows = benchmark(args.runs, args.only)
    print(markdown_table(Row("Measurement", "Runs", "Time"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
