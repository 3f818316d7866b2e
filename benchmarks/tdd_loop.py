"""The TDD loop: one small test file run again and again, timed beside the seed's own
`manage.py test` (the tutorial this project descends from) in the same run.

Each row is the wall time of the whole command, as a user types it, median of --runs runs
after one unmeasured warm-up run:

  seed baseline       `python manage.py test` in a copy of the tutorial's project given as
                      --baseline DIR (its one test, test__create_user, on docker-compose)
  warm                `inv test -- tests/test_models.py` after `APPLICATION_CONFIG=testing
                      inv db.up`: the warm test server (local binaries, then Compose)
  cold                the same, each run its own throwaway server (DB_SERVER=local, compose)
  --pattern user      `inv test --pattern user`, cold: the whole suite collected, the user tests run
  plain pytest        `pytest tests/test_models.py` with the warm server up

Both projects run with Python's default of writing bytecode caches (PYTHONDONTWRITEBYTECODE
is removed from their environment), as on a developer's machine. It works in a copy of this project (its own cluster folder and Compose project names), so
your own servers are neither used nor touched, and removes what it started on the way out.

    python benchmarks/tdd_loop.py --baseline DIR [--runs 5] [--quick]

--quick: one run per row and no warm-up (CI runs it so that it cannot rot). The Compose
rows and the seed need a Docker engine; without one they are left out, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from steps.compose import docker_engine_answers  # noqa: E402
from steps.environment import REQUIRED_VARIABLES  # noqa: E402
from steps.local_files import state_root  # noqa: E402


def baseline(folder: str | None) -> Path | None:
    """The tutorial's project given as --baseline, if it is one and a Docker engine runs it;
    said loudly when not, since every ratio needs it."""
    if not folder:
        progress(
            "NO BASELINE: --baseline DIR not given; the seed's row and the ratios are left out"
        )
    elif not (Path(folder) / "manage.py").is_file():
        progress(
            f"NO BASELINE: {folder} has no manage.py; the seed's row and the ratios are left out"
        )
    elif not docker_engine_answers():
        progress("NO BASELINE: no Docker engine runs the seed; its row and the ratios are left out")
    else:
        return Path(folder)
    return None


TEST_FILE = "tests/test_models.py"
# What an outer `inv` or `inv test` may have exported: each measured command loads its own.
EXPORTED = {
    "APPLICATION_CONFIG", "FLASK_CONFIG", "FLASK_DEBUG", "SECRET_KEY", "DB_SERVER",
    "DATABASE_URL", "INV_TEST_DATABASE", "PGPASSWORD", *REQUIRED_VARIABLES,
}  # fmt: skip
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".postgres", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".schemathesis", ".coverage", "*.local.env",
)  # fmt: skip


# The script running (suite.py uses these helpers too), for its messages.
NAME = Path(sys.argv[0]).stem


def progress(message: str) -> None:
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


def environ(**overrides: str) -> dict[str, str]:
    """This environment less what an outer inv exported, and with Python's default of
    writing bytecode caches: a user's machine keeps them, CI images often turn them off."""
    clean = {k: v for k, v in os.environ.items() if k not in EXPORTED and not k.startswith("COV_")}
    clean.pop("PYTHONDONTWRITEBYTECODE", None)
    return {**clean, **overrides}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{NAME}: `{' '.join(command)}` failed:\n{result.stdout}{result.stderr}")
    return elapsed


def measure(
    label: str, command: list[str], cwd: Path, env: dict[str, str], runs: int, warm_up: bool
) -> tuple[str, list[float]]:
    progress(f"{label}: {runs} run(s)")
    if warm_up:
        timed(command, cwd, env)
    return label, [timed(command, cwd, env) for _ in range(runs)]


def docker_volumes() -> set[str]:
    listing = subprocess.run(["docker", "volume", "ls", "--quiet"], capture_output=True, text=True)
    return set(listing.stdout.split())


def remove_volumes_left_by_the_seed(before: set[str]) -> None:
    """The seed's `docker-compose down` leaves the postgres image's anonymous volume of each
    run behind: the ones this run made, unused now, are removed."""
    dangling = subprocess.run(
        ["docker", "volume", "ls", "--quiet", "--filter", "dangling=true"],
        capture_output=True,
        text=True,
    ).stdout.split()
    left = [volume for volume in dangling if volume not in before]
    if left:
        subprocess.run(["docker", "volume", "rm", *left], capture_output=True)


def inv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def table(rows: list[tuple[str, list[float]]], seed: float | None) -> str:
    lines = ["| command | runs | median | min | max | ratio to seed |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, times in rows:
        median = statistics.median(times)
        ratio = f"{median / seed:.2f}" if seed else "-"
        lines.append(
            f"| {label} | {len(times)} | {median:.2f} s | {min(times):.2f} s"
            f" | {max(times):.2f} s | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run per row, no warm-up")
    parser.add_argument("--baseline", help="the tutorial's project (its manage.py test)")
    options = parser.parse_args()
    seed_project = baseline(options.baseline)
    runs, warm_up = (1, False) if options.quick else (options.runs, True)
    docker = docker_engine_answers()
    servers = ["local", "compose"] if docker else ["local"]
    rows: list[tuple[str, list[float]]] = []
    seed_median = None
    with tempfile.TemporaryDirectory(prefix="tdd-loop-") as scratch:
        copy = Path(scratch) / "project"
        shutil.copytree(PROJECT, copy, ignore=IGNORED)
        if seed_project:
            seed = Path(scratch) / "seed"
            shutil.copytree(seed_project, seed)
            volumes = docker_volumes()
            try:
                label, times = measure(
                    "seed: `python manage.py test`",
                    [sys.executable, "manage.py", "test"],
                    seed,
                    environ(),
                    runs,
                    warm_up,
                )
            finally:
                remove_volumes_left_by_the_seed(volumes)
            rows.append((label, times))
            seed_median = statistics.median(times)
        test_file = inv("test", "--", TEST_FILE)
        for server in servers:
            up = environ(APPLICATION_CONFIG="testing", DB_SERVER=server)
            subprocess.run(inv("db.up"), cwd=copy, env=up, check=True, capture_output=True)
            try:
                rows.append(
                    measure(
                        f"warm {server}: `inv test -- {TEST_FILE}`",
                        test_file,
                        copy,
                        environ(DB_SERVER=server),
                        runs,
                        warm_up,
                    )
                )
                if server == "local":
                    plain = [sys.executable, "-m", "pytest", TEST_FILE]
                    rows.append(
                        measure(
                            f"warm {server}: `pytest {TEST_FILE}`",
                            plain,
                            copy,
                            environ(DB_SERVER=server),
                            runs,
                            warm_up,
                        )
                    )
            finally:
                subprocess.run(inv("db.down"), cwd=copy, env=up, capture_output=True)
        for server in servers:
            rows.append(
                measure(
                    f"cold {server}: `inv test -- {TEST_FILE}`",
                    test_file,
                    copy,
                    environ(DB_SERVER=server),
                    runs,
                    warm_up,
                )
            )
        for server in servers:
            pattern = inv("test", "--pattern", "user")
            rows.append(
                measure(
                    f"cold {server}: `inv test --pattern user`",
                    pattern,
                    copy,
                    environ(DB_SERVER=server),
                    runs,
                    warm_up,
                )
            )
        shutil.rmtree(state_root(copy), ignore_errors=True)
    print(table(rows, seed_median))


if __name__ == "__main__":
    main()
