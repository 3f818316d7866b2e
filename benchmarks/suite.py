"""The end-to-end suite's wall time as `inv test --e2e` runs it with local servers only
(DOCKER_HOST pointed at no engine), beside the seed's own `manage.py test` in the same run:
the seed has one test, so its row is this machine's yardstick for noise, not a like-for-like
comparison. Also the app's suite as plain `pytest` runs it, with no server running
beforehand.

The commands take turns (seed, e2e suite, app suite, seed, ...) so that a noisy minute hits
them alike; each row gives the median, min and max of --runs runs after one unmeasured
warm-up round (which also gives the suite the module times it schedules by). In a copy of
the project (its own clusters), with Python's default of writing bytecode caches, as
tdd_loop.py does.

    python benchmarks/suite.py --baseline DIR [--runs 5] [--workers 4,5,6] [--quick]

--workers: the end-to-end suite once per value of test.workers (default: the config's).
--quick: one round, no warm-up, `inv test` (the app's suite) instead of the end-to-end one
(CI runs it so that it cannot rot).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from tdd_loop import (
    IGNORED,
    PROJECT,
    baseline,
    docker_volumes,
    environ,
    inv,
    progress,
    remove_volumes_left_by_the_seed,
    table,
    timed,
)

from steps.local_files import state_root

NO_ENGINE = "unix:///nonexistent/docker.sock"


def local_only(**overrides: str) -> dict[str, str]:
    """environ() with no Docker engine answering, on purpose: without CI=true, under which
    the suite takes a missing engine for a broken CI machine and fails."""
    env = environ(DOCKER_HOST=NO_ENGINE, **overrides)
    env.pop("CI", None)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", default="", help="comma-separated test.workers values")
    parser.add_argument("--quick", action="store_true", help="one round, the app's suite only")
    parser.add_argument("--baseline", help="the tutorial's project (its manage.py test)")
    options = parser.parse_args()
    seed_project = baseline(options.baseline)
    runs, warm_up = (1, False) if options.quick else (options.runs, True)
    workers = [w.strip() for w in options.workers.split(",") if w.strip()] or [None]
    with tempfile.TemporaryDirectory(prefix="suite-") as scratch:
        copy = Path(scratch) / "project"
        shutil.copytree(PROJECT, copy, ignore=IGNORED)
        commands: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
        seed = None
        if seed_project:
            shutil.copytree(seed_project, Path(scratch) / "seed")
            seed = "seed: `python manage.py test` (1 test, docker-compose)"
            commands[seed] = (
                [sys.executable, "manage.py", "test"],
                Path(scratch) / "seed",
                environ(),
            )
        for count in workers:
            setting = {"INVOKE_TEST_WORKERS": count} if count else {}
            suite = ["test"] if options.quick else ["test", "--e2e"]
            label = (
                f"`inv {' '.join(suite)}`, local servers only, test.workers={count or 'default'}"
            )
            commands[label] = (inv(*suite), copy, local_only(**setting))
        plain = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        commands["plain `pytest` (the app's suite), local"] = (plain, copy, local_only())
        rows: dict[str, list[float]] = {label: [] for label in commands}
        volumes = docker_volumes() if seed else set()
        try:
            for round_ in range(1 - warm_up, runs + 1):  # round 0: the warm-up
                progress(f"round {round_} of {runs}" if round_ else "warm-up")
                for label, (command, cwd, env) in commands.items():
                    elapsed = timed(command, cwd, env)
                    if round_:
                        rows[label].append(elapsed)
        finally:
            if seed:
                remove_volumes_left_by_the_seed(volumes)
            shutil.rmtree(state_root(copy), ignore_errors=True)
    print(table(list(rows.items()), statistics.median(rows[seed]) if seed else None))


if __name__ == "__main__":
    main()
