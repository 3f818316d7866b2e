"""What the benchmark scripts share: environment, timing, one-line errors, tables, the baseline."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from invoke import Exit  # noqa: E402

from steps import commands, environment  # noqa: E402
from steps.compose import docker_engine_answers  # noqa: E402
from steps.servers.local_files import state_root  # noqa: E402

NAME = Path(sys.argv[0]).stem
# What an outer `inv` or `inv test` may have exported: each measured command loads its own.
EXPORTED = {
    "APPLICATION_CONFIG", "FLASK_CONFIG", "FLASK_DEBUG", "SECRET_KEY", "DB_SERVER",
    "DATABASE_URL", "INV_TEST_DATABASE", "PGPASSWORD", *environment.REQUIRED_VARIABLES,
}  # fmt: skip
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".postgres", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".schemathesis", ".coverage", "*.local.env",
)  # fmt: skip
SEED_TEST = [sys.executable, "manage.py", "test"]


class BenchmarkError(Exception):
    """A reason not to go on, told in one line."""


def progress(message: str) -> None:
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, stopping what runs; a reason to stop is one line and a code."""
    try:
        with commands.sigterm_unwinds():
            yield
    except BenchmarkError as error:
        progress(str(error))
        raise SystemExit(1) from None
    except Exit as error:  # a step failed, its message says why
        print(error.message, file=sys.stderr)
        raise SystemExit(error.code or 1) from None
    except KeyboardInterrupt:
        progress("interrupted")
        raise SystemExit(130) from None


def environ(**overrides: str) -> dict[str, str]:
    """This environment less what an outer inv exported, writing bytecode caches as Python does."""
    clean = {k: v for k, v in os.environ.items() if k not in EXPORTED and not k.startswith("COV_")}
    clean.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's machine keeps them; CI images may not
    return {**clean, **overrides}


def load_testing_env(**overrides: str) -> environment.Env:
    """env/testing.env loaded in this process as a fresh `inv test` loads it."""
    clean = environ(**overrides)
    os.environ.clear()
    os.environ.update(clean)
    return environment.load_env("testing")


def timed(command: list, env: dict[str, str], cwd: Path = PROJECT) -> float:
    """The wall time of `command` run to its end; a failure stops the benchmark."""
    child = commands.Foreground()
    started = time.perf_counter()
    # As under inv: a signal reaches it once, and it is waited for while it stops its own.
    with commands.signals_forwarded(child.deliver) as received:
        process = child.started(
            subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
        )  # fmt: skip
        output = process.communicate()[0]
    elapsed = time.perf_counter() - started
    code = commands.exit_code(process.returncode, received)
    if code != 0:
        words = shlex.join(map(str, command))
        raise BenchmarkError(f"`{words}` exited with {code}:\n{output.strip()[-2000:]}")
    return elapsed


def inv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


@contextlib.contextmanager
def project_copy() -> Iterator[Path]:
    """A copy of the project with servers of its own (yours are not touched), deleted after."""
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as scratch:
        copy = Path(scratch) / "project"
        shutil.copytree(PROJECT, copy, ignore=IGNORED)
        try:
            yield copy
        finally:
            shutil.rmtree(state_root(copy), ignore_errors=True)


def baseline(folder: str | None) -> Path | None:
    """The tutorial's project of --baseline, if a Docker engine can run it; said loudly if not."""
    if not folder:
        why = "--baseline DIR not given"
    elif not (Path(folder) / "manage.py").is_file():
        why = f"{folder} has no manage.py"
    elif not docker_engine_answers():
        why = "no Docker engine runs the tutorial's project"
    else:
        return Path(folder)
    progress(f"NO BASELINE: {why}; the seed's row and the ratios are left out")
    return None


@contextlib.contextmanager
def seed_copy(folder: Path) -> Iterator[Path]:
    """A copy of the tutorial's project; the anonymous volumes its runs leave are removed after."""

    def volumes(*options: str) -> set[str]:
        listing = ["docker", "volume", "ls", "--quiet", *options]
        return set(subprocess.run(listing, capture_output=True, text=True).stdout.split())

    before = volumes()
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-seed-") as scratch:
        copy = Path(scratch) / "seed"
        shutil.copytree(folder, copy)
        try:
            yield copy
        finally:
            left = volumes("--filter", "dangling=true") - before
            if left:
                subprocess.run(["docker", "volume", "rm", *left], capture_output=True)


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows as a Markdown table, its columns padded to their widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def median_table(times: dict[str, list[float]], seed: str | None) -> str:
    """Median, min and max of each command's times, and its ratio to the seed's row."""
    base = statistics.median(times[seed]) if seed else None
    rows = [
        (label, str(len(runs)), *(f"{f(runs):.2f} s" for f in (statistics.median, min, max)),
         f"{statistics.median(runs) / base:.2f}" if base else "-")
        for label, runs in times.items()
    ]  # fmt: skip
    header = ("command", "runs", "median", "min", "max", "ratio to seed")
    absent = "" if seed else "\n\nNO BASELINE: the tutorial's project was not run (see above)"
    return markdown_table(header, rows) + absent
