"""The TDD loop: one small test file run again and again, timed as a user types it.

python benchmarks/tdd_loop.py --baseline DIR [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from measuring import (
    SEED_TEST,
    baseline,
    environ,
    inv,
    median_table,
    one_line_errors,
    progress,
    project_copy,
    seed_copy,
    timed,
)

from steps.compose import docker_engine_answers

TEST_FILE = "tests/test_models.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run per row, no warm-up")
    parser.add_argument("--baseline", metavar="DIR", help="the tutorial's project")
    options = parser.parse_args()
    runs, warm_up = (1, False) if options.quick else (options.runs, True)
    servers = ["local", "compose"] if docker_engine_answers() else ["local"]
    times: dict[str, list[float]] = {}

    def measure(label: str, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        progress(f"{label}: {runs} run(s)")
        if warm_up:
            timed(command, env, cwd)
        times[label] = [timed(command, env, cwd) for _ in range(runs)]

    test_file, pattern, suite = (
        inv("test", "--", TEST_FILE),
        inv("test", "--pattern", "user"),
        inv("test"),
    )
    with one_line_errors(), project_copy() as copy:
        seed_project = baseline(options.baseline)
        seed = "seed: `python manage.py test`" if seed_project else None
        if seed_project:
            with seed_copy(seed_project) as seed_folder:
                measure(seed, SEED_TEST, seed_folder, environ())
        for server in servers:
            warm = environ(APPLICATION_CONFIG="testing", DB_SERVER=server)
            timed(inv("db.up"), warm, copy)
            try:
                env = environ(DB_SERVER=server)
                measure(f"warm {server}: `inv test -- {TEST_FILE}`", test_file, copy, env)
                measure(f"warm {server}: `inv test --pattern user`", pattern, copy, env)
                if server == "local":
                    plain = [sys.executable, "-m", "pytest", TEST_FILE]
                    measure(f"warm local: `pytest {TEST_FILE}`", plain, copy, env)
            finally:
                subprocess.run(inv("db.down"), cwd=copy, env=warm, capture_output=True)
        for server in servers:
            env = environ(DB_SERVER=server)
            measure(f"cold {server}: `inv test -- {TEST_FILE}`", test_file, copy, env)
        for server in servers:
            env = environ(DB_SERVER=server)
            measure(f"cold {server}: `inv test --pattern user`", pattern, copy, env)
            measure(f"cold {server}: `inv test` (the app's suite)", suite, copy, env)
    print(median_table(times, seed))


if __name__ == "__main__":
    main()
