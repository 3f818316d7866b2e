"""What scenarios and snapshots cost: a test on 10,000 rows, a restore of 100,000, inv scenario.

python benchmarks/scenarios.py [--runs 10] [--quick]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from measuring import (
    environ,
    inv,
    load_testing_env,
    markdown_table,
    one_line_errors,
    progress,
    project_copy,
    timed,
)

from steps import postgres, scenarios, servers, templates

# The development database of the restore benchmark: 100,000 users, built as a scenario is.
BIG_SCENARIO = '''"""100,000 users."""

from sqlalchemy import insert

from app.models import User, folded


def build(session):
    emails = [f"user{n:06}@example.org" for n in range(100_000)]
    session.execute(insert(User), [{"email": e, "email_folded": folded(e)} for e in emails])
'''


def seconds_of(work: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def tests_on_a_scenario(runs: int) -> list[tuple[str, float]]:
    """Per test on many_users (10,000 rows): the plugin's way, a copy per test, a rebuild."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    env = load_testing_env(DB_SERVER="local")
    with servers.database_for_tests(env, report=progress) as (host, port):

        def engine_on(database: str):
            def connect():
                return postgres.connect(env, host, port, database)

            return create_engine("postgresql+psycopg2://", poolclass=NullPool, creator=connect)

        def one_test(engine) -> None:  # as tests/conftest.py's `database` fixture does
            with engine.connect() as connection:
                transaction = connection.begin()
                connection.execute(text("SELECT count(*) FROM users")).scalar()
                transaction.rollback()

        with templates.server_connection(env, host, port) as server:
            head = templates.template_at_head(env, server)
            with server.cursor() as cursor:  # built from nothing, even on a warm server
                templates.drop(cursor, templates.scenario_template(env, server, "many_users"))
            started = time.perf_counter()
            template = templates.scenario_template(env, server, "many_users")
            built = time.perf_counter() - started
        with templates.copy_of_scenario(env, host, port, "many_users") as copy:
            engine = engine_on(copy)
            in_transaction = seconds_of(lambda: one_test(engine), runs)

        def copy_per_test() -> None:
            with templates.copy_of(env, host, port, template, "_bench") as name:
                one_test(engine_on(name))

        def rebuild() -> None:
            with templates.copy_of(env, host, port, head, "_rebuild") as name:
                scenarios.build("many_users", lambda: postgres.connect(env, host, port, name))
                one_test(engine_on(name))

        copied = seconds_of(copy_per_test, runs)
        rebuilt = seconds_of(rebuild, max(1, runs // 3))
    return [
        ("building many_users into its template (once per edit)", built),
        (
            "a test in its transaction on this process's copy (the plugin's way)",
            median(in_transaction),
        ),
        ("a test on a copy of its own: copy, connect, drop", median(copied)),
        ("a test on the scenario rebuilt for it: copy of head, build, drop", median(rebuilt)),
    ]


def median(times: list[float]) -> float:
    return statistics.median(times)


def restore_and_scenario(runs: int, warm_up: bool) -> list[tuple[str, float]]:
    """inv db.restore against inv db.load (pg_restore) of the same 100,000 rows; inv scenario."""
    with project_copy() as copy:
        env = environ(DB_SERVER="local")
        (copy / "scenarios" / "big_bench.py").write_text(BIG_SCENARIO)
        try:
            progress("a development database of 100,000 users, its snapshot and its dump")
            timed(inv("db.seed", "big_bench", "--yes"), env, copy)
            timed(inv("db.snapshot", "big"), env, copy)
            timed(inv("db.dump", "--file", str(copy / "big.dump")), env, copy)
            restore = inv("db.restore", "big", "--yes")
            load = inv("db.load", str(copy / "big.dump"), "--yes")
            if warm_up:
                timed(restore, env, copy), timed(load, env, copy)
            progress(f"restore and load: {runs} run(s) each")
            restored = [timed(restore, env, copy) for _ in range(runs)]
            loaded = [timed(load, env, copy) for _ in range(runs)]
            progress(f"inv scenario many_users: {runs} run(s)")
            if warm_up:
                first_answer(copy, env)
            served = [first_answer(copy, env) for _ in range(runs)]
        finally:
            subprocess.run(inv("db.down"), cwd=copy, env=env, capture_output=True)
    return [
        ("`inv db.restore big --yes` (100,000 rows, a template on the server)", median(restored)),
        ("`inv db.load big.dump --yes` (pg_restore of the same rows)", median(loaded)),
        ("`inv scenario many_users`: the command to its first answer", median(served)),
    ]


def first_answer(copy: Path, env: dict[str, str]) -> float:
    """Seconds from `inv scenario many_users` to the first answer of GET /users; stopped after."""
    started = time.perf_counter()
    run = subprocess.Popen(
        inv("scenario", "many_users"), cwd=copy, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = next((m[1] for line in run.stdout if (m := re.search(r"at (http\S+)", line))), None)
        while url:
            try:
                with urllib.request.urlopen(f"{url}users?limit=1", timeout=2):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.02)
        raise SystemExit(f"inv scenario ended before it served: {run.communicate()[0]}")
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one run of each, no warm-up")
    options = parser.parse_args()
    runs = 1 if options.quick else options.runs
    with one_line_errors():
        rows = tests_on_a_scenario(max(runs, 3)) + restore_and_scenario(runs, not options.quick)
    figures = dict(rows)
    test_rows = [label for label, _ in rows[1:4]]
    ratios = [
        ("rebuilt / in its transaction", figures[test_rows[2]] / figures[test_rows[0]]),
        ("rebuilt / a copy of its own", figures[test_rows[2]] / figures[test_rows[1]]),
        ("pg_restore / inv db.restore", figures[rows[5][0]] / figures[rows[4][0]]),
    ]
    table = [(label, f"{seconds * 1000:.1f} ms") for label, seconds in rows]
    table += [(label, f"{ratio:.1f}x") for label, ratio in ratios]
    print(markdown_table(("measurement (medians)", "time"), table))


if __name__ == "__main__":
    main()
