"""The suites' wall time, taking turns with the tutorial's own `python manage.py test`.

python benchmarks/suite.py --baseline DIR [--runs 5] [--workers 4,5,6] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import sys

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

NO_ENGINE = "unix:///nonexistent/docker.sock"


def local_only(**overrides: str) -> dict[str, str]:
    """environ() with no Docker engine answering, on purpose, and without CI=true."""
    env = environ(DOCKER_HOST=NO_ENGINE, **overrides)
    env.pop("CI", None)  # under CI=true the suite takes a missing engine for a broken machine
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", default="", help="comma-separated test.workers values")
    parser.add_argument("--quick", action="store_true", help="one round, the app's suite only")
    parser.add_argument("--baseline", metavar="DIR", help="the tutorial's project")
    options = parser.parse_args()
    runs, warm_up = (1, False) if options.quick else (options.runs, True)
    workers = [w.strip() for w in options.workers.split(",") if w.strip()] or [None]
    suite = ["test"] if options.quick else ["test", "--e2e"]
    with one_line_errors(), project_copy() as copy, contextlib.ExitStack() as stack:
        seed_project = baseline(options.baseline)
        # One test: this machine's yardstick for noise, not a comparison.
        seed = "seed: `python manage.py test` (1 test, docker-compose)" if seed_project else None
        commands = {}
        if seed_project:
            commands[seed] = (SEED_TEST, stack.enter_context(seed_copy(seed_project)), environ())
        for count in workers:
            setting = {"INVOKE_TEST_WORKERS": count} if count else {}
            label = (
                f"`inv {' '.join(suite)}`, local servers only, test.workers={count or 'default'}"
            )
            commands[label] = (inv(*suite), copy, local_only(**setting))
        plain = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        commands["plain `pytest` (the app's suite), local"] = (plain, copy, local_only())
        times: dict[str, list[float]] = {label: [] for label in commands}
        for round_ in range(1 - warm_up, runs + 1):  # round 0: the warm-up
            progress(f"round {round_} of {runs}" if round_ else "warm-up")
            for label, (command, cwd, env) in commands.items():
                elapsed = timed(command, env, cwd)
                if round_:
                    times[label].append(elapsed)
    print(median_table(times, seed))


if __name__ == "__main__":
    main()
