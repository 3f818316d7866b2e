"""What PostgreSQL costs the test suite, as a Markdown table for the README.

    python benchmarks/server_overhead.py [--runs 10] [--only local|compose|all] [--quick]

--only local: parts 1 (local), 2 and 3 below; --only compose: part 1 (compose).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pwd
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple
from unittest import mock

from measuring import (
    PROJECT,
    BenchmarkError,
    environ,
    load_testing_env,
    markdown_table,
    one_line_errors,
    progress,
    timed,
)

from steps import compose, environment, servers, templates
from steps.servers import local, local_files, local_template

TESTS = 500
PYTEST_RUNS = 3
# What a cold `inv test` does before and after pytest's own run, in one fresh interpreter.
COLD_TEST = """\
import tasks
from steps import environment, templates, servers
env = environment.load_env("testing")
with servers.database_for_tests(env) as (host, port):
    with templates.server_connection(env, host, port) as server:
        template = templates.template_at_head(env, server)
    with templates.copy_of(env, host, port, template):
        pass
"""


class Row(NamedTuple):
    measurement: str
    runs: str
    time: str


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def median_ms(samples: list[float]) -> str:
    return f"{milliseconds(statistics.median(samples))} median"


def median_max(samples: list[float]) -> str:
    return f"{median_ms(samples)}, {milliseconds(max(samples))} max"


def seconds_of(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def testing_env(db_server: str) -> environment.Env:
    """The testing env as `DB_SERVER=<db_server> inv test` loads it, unless a warm server runs."""
    env = load_testing_env(DB_SERVER=db_server)
    # `inv test` would use the warm server: the figures would be a warm run's.
    if servers.provider_for(env).running() is not None:
        raise BenchmarkError(
            f"a warm testing server is running: `APPLICATION_CONFIG=testing DB_SERVER={db_server} inv db.down` first"
        )
    return env


# --------------------------------------------------------------------------- 1. cold `inv test`


def cold_label(db_server: str) -> str:
    return f"Cold `inv test` less pytest (DB_SERVER={db_server}), a fresh interpreter"


def cold_steps(env: environment.Env) -> dict[str, float]:
    """Seconds of each step of COLD_TEST, in this process."""
    marks = [time.perf_counter()]
    # Muted: the steps' `inv:` lines and alembic's, each run.
    with contextlib.redirect_stderr(io.StringIO()), contextlib.ExitStack() as server_up:
        host, port = server_up.enter_context(servers.database_for_tests(env))
        marks.append(time.perf_counter())
        with templates.server_connection(env, host, port) as server:
            template = templates.template_at_head(env, server)
        marks.append(time.perf_counter())
        with templates.copy_of(env, host, port, template):
            marks.append(time.perf_counter())
        marks.append(time.perf_counter())
        server_up.close()
        marks.append(time.perf_counter())
    steps = ("server up, until a connection succeeds", "template at head (migrated)",
             "copy of the template made", "copy dropped", "server down and deleted")  # fmt: skip
    return {step: end - start for step, (start, end) in zip(steps, pairwise(marks), strict=True)}


def cold_test(db_server: str, runs: int) -> list[Row]:
    env = testing_env(db_server)
    progress(f"cold `inv test` (DB_SERVER={db_server}) without pytest, {runs} run(s)")
    child = environ(DB_SERVER=db_server)
    cold = [timed([sys.executable, "-c", COLD_TEST], child) for _ in range(runs)]
    rows = [Row(cold_label(db_server), str(runs), median_max(cold))]
    if db_server == "local":
        imports = [timed([sys.executable, "-c", "import tasks"], child) for _ in range(runs)]
        rows.append(Row("... of which `python -c 'import tasks'`", str(runs), median_max(imports)))
    progress(f"the same steps in this process, {runs} run(s)")
    samples = [cold_steps(env) for _ in range(runs)]
    return rows + [
        Row(f"... {step} (in-process)", str(runs), median_ms([run[step] for run in samples]))
        for step in samples[0]
    ]


# --------------------------------------------------------------------------- 2. initdb versus copy


@contextlib.contextmanager
def scratch(account: pwd.struct_passwd | None) -> Iterator[Path]:
    """An empty folder on tmpfs that the server's account owns, deleted afterwards."""
    path = Path(tempfile.mkdtemp(prefix="server-overhead-", dir=local_files.scratch_root()))
    try:
        yield local_files.give_to(path, account)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def time_initdb(env: environment.Env, bindir: Path, account: pwd.struct_passwd | None) -> float:
    """template_cluster into an empty cache, as on a machine's first `inv test`: initdb."""
    with (
        scratch(account) as cache,
        mock.patch.object(local_files, "cache_root", return_value=cache),
    ):
        return seconds_of(lambda: local_template.template_cluster(env, bindir, account))


def time_copy(env: environment.Env, bindir: Path, account: pwd.struct_passwd | None) -> float:
    """make_cluster with the template cached, as every throwaway server's start: a copy."""
    with scratch(account) as home:
        cluster = local.LocalCluster(home, bindir, account)
        return seconds_of(lambda: local_template.make_cluster(cluster, env))


def cluster_creation(env: environment.Env, runs: int) -> list[Row]:
    progress(f"initdb versus a template copy, {runs} run(s) each")
    account = local_files.server_account()
    bindir = local_template.reachable_binaries(local_template.find_server_binaries(), account)
    local_template.template_cluster(env, bindir, account)  # cached before the copies are timed
    initdb = [time_initdb(env, bindir, account) for _ in range(runs)]
    copy = [time_copy(env, bindir, account) for _ in range(runs)]
    return [
        Row(
            "initdb of a new cluster (template_cluster, nothing cached), tmpfs",
            str(runs),
            median_ms(initdb),
        ),
        Row("copy of the cached template (make_cluster), tmpfs", str(runs), median_ms(copy)),
    ]


# --------------------------------------------------------------------------- 3. per-test isolation


def write_suite(folder: Path, fixture: str) -> Path:
    """The project's conftest and TESTS empty tests that each use `fixture`."""
    folder.mkdir()
    shutil.copy(PROJECT / "tests" / "conftest.py", folder / "conftest.py")
    tests = "\n\n".join(f"def test_{n}({fixture}):\n    pass\n" for n in range(TESTS))
    (folder / "test_benchmark.py").write_text(tests)
    return folder


def isolation(env: environment.Env, runs: int) -> list[Row]:
    """The best of `runs` pytest runs of each suite, with the project's settings, on one server."""
    progress(f"{TESTS} tests with `database` versus `app`, best of {runs}")
    times: dict[str, list[float]] = {"app": [], "database": []}
    with (
        contextlib.redirect_stderr(io.StringIO()),
        servers.database_for_tests(env) as (host, port),
        tempfile.TemporaryDirectory(prefix="server-overhead-") as root,
    ):
        with templates.server_connection(env, host, port) as server:
            templates.template_at_head(env, server)  # built before the runs are timed
        suites = {name: write_suite(Path(root) / name, name) for name in times}
        for _ in range(runs):  # taking turns, so that noise hits both suites alike
            for name, suite in suites.items():
                pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-c", PROJECT / "pyproject.toml", "--rootdir", suite, suite]  # fmt: skip
                times[name].append(timed(pytest, dict(os.environ)))
    best = {name: min(samples) for name, samples in times.items()}
    per_test = (best["database"] - best["app"]) / TESTS
    label = f"best of {runs}"
    return [
        Row(f"pytest, {TESTS} tests using `app` only", label, f"{best['app']:.2f} s"),
        Row(f"pytest, {TESTS} tests using `database`", label, f"{best['database']:.2f} s"),
        Row("Per-test cost of the `database` fixture", label, f"{per_test * 1000:.2f} ms"),
    ]


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="of each measure (default: 10)")
    parser.add_argument(
        "--only", choices=("local", "compose", "all"), default="all", help="servers"
    )
    parser.add_argument("--quick", action="store_true", help="one run of each measure")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    runs, pytest_runs = (1, 1) if args.quick else (args.runs, PYTEST_RUNS)
    rows: list[Row] = []
    with one_line_errors():
        if args.only in ("local", "all"):
            rows += cold_test("local", runs)
        if args.only in ("compose", "all"):
            if compose.docker_engine_answers():
                rows += cold_test("compose", runs)
            else:
                rows.append(Row(cold_label("compose"), "-", "skipped: no Docker engine"))
        if args.only in ("local", "all"):
            env = testing_env("local")
            rows += cluster_creation(env, runs) + isolation(env, pytest_runs)
    print(markdown_table(("Measurement", "Runs", "Time"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
