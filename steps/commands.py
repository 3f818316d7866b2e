"""One-line errors, and commands run in the foreground or beside a task, with their signals."""

# invoke's c.run serves plain commands; `run` here is for a child a user interrupts (flask,
# pytest, psql): invoke does not forward SIGTERM to it, and re-sends a Ctrl-C it already got.

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import invoke
from invoke import Exit

from steps import PROJECT


def fail(message: str) -> NoReturn:
    """Stop the task with one readable line and exit status 1 (finally blocks still run)."""
    raise Exit(f"inv: {message}", code=1)


def say(message: str) -> None:
    print(f"inv: {message}", file=sys.stderr, flush=True)


class InterruptibleTask(invoke.Task):
    """invoke's Task, but Ctrl-C ends it with one line and exit status 130 (invoke exits 1)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            message = "inv: interrupted; its commands and throwaway servers are stopped"
            raise Exit(message, code=128 + signal.SIGINT) from None


task = functools.partial(invoke.task, klass=InterruptibleTask)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """In this block SIGTERM unwinds like Ctrl-C, so every `finally` stops what the task started."""
    if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm or not in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Let teardown finish: a second Ctrl-C or SIGTERM is ignored while it runs."""
    if not in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def interrupt_came_from_terminal() -> bool:
    """True when Ctrl-C was typed: the terminal then signalled our child too."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


@contextlib.contextmanager
def signals_forwarded(deliver: Callable[[int], None]) -> Iterator[list[int]]:
    """In this block, Ctrl-C and SIGTERM sent to inv go to `deliver`; yields those received."""
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        deliver(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Foreground:
    """A command in the foreground: Ctrl-C and SIGTERM sent to inv reach it once, those that
    came while it started included (the terminal's Ctrl-C reaches it by itself)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.early: list[int] = []

    def deliver(self, signum: int) -> None:
        if self.process is None:
            self.early.append(signum)
        elif not (signum == signal.SIGINT and interrupt_came_from_terminal()):
            self.process.send_signal(signum)

    def started(self, process: subprocess.Popen) -> subprocess.Popen:
        self.process = process
        for signum in self.early:
            process.send_signal(signum)
        return process


def ends_with_this_process() -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGTERM when inv dies, even by SIGKILL (Linux only)."""
    if sys.platform != "linux":
        return None
    parent = os.getpid()

    def in_the_child() -> None:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # inv died before that took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return in_the_child


def start_foreground(args: list[str], **options) -> subprocess.Popen:
    try:
        return subprocess.Popen(args, cwd=PROJECT, preexec_fn=ends_with_this_process(), **options)
    except FileNotFoundError:
        fail(f"{args[0]} not found: install it or put it on PATH")


def exit_code(code: int, received: list[int], interactive: bool = False) -> int:
    """A child's exit code as a shell reports it; inv stops too after a SIGTERM or Ctrl-C."""
    # An interactive child (psql, a shell) takes Ctrl-C itself and goes on: so does inv.
    if signal.SIGTERM in received:
        raise SystemExit(128 + signal.SIGTERM)
    if signal.SIGINT in received and not interactive:
        raise KeyboardInterrupt
    return code if code >= 0 else 128 - code


def run(args: list[str], stdin: str | None = None, interactive: bool = False) -> int:
    """Run a command in the foreground, signals sent to inv passed on once; its exit code."""
    child = Foreground()
    with signals_forwarded(child.deliver) as received:
        process = child.started(start_foreground(args, stdin=subprocess.PIPE if stdin else None))
        if stdin:
            process.communicate(stdin.encode())
        code = process.wait()
    return exit_code(code, received, interactive)


@contextlib.contextmanager
def background(args: list[str], log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A command running beside this block, output to `log`; terminated and waited for after."""
    with sigterm_unwinds():
        with log.open("ab") if log else contextlib.nullcontext() as output:
            process = subprocess.Popen(
                args, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                preexec_fn=ends_with_this_process(),
            )  # fmt: skip
        try:
            yield process
        finally:
            with signals_held():
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def remainder(c, argv: list[str] | None = None) -> list[str]:
    """The words after `--`, their quoting kept (invoke's c.remainder joins them with spaces)."""
    argv = sys.argv if argv is None else argv
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return shlex.split(c.remainder or "")


# The tasks that hand the words after `--` on, and the command they go to.
PASSES_ON = {"dev": "flask run", "test": "pytest", "flask": "flask", "compose": "docker compose"}


def words_before_the_dashes(argv: list[str], task_names: Iterable[str]) -> None:
    """Refuse `inv compose up` in one line: invoke's parser has no hook for a better error."""
    program = Path(argv[0])
    if program.name not in ("inv", "invoke") and program.parent.name != "invoke":
        return  # not inv, nor `python -m invoke`
    words = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    for at, (name, word) in enumerate(itertools.pairwise(words), start=1):
        if name in PASSES_ON and not word.startswith("-") and word not in task_names:
            fail(
                f"{word!r} is not a task: what goes to {PASSES_ON[name]} comes after `--`, "
                f"as in `inv {name} -- {shlex.join(words[at:])}`"
            )


def confirm(question: str, yes: bool, production: bool) -> None:
    """Ask before destroying data; --yes skips it, required without a TTY or in production."""
    if yes:
        return
    if production:
        fail(f"refusing in production without --yes: {question}")
    if not sys.stdin.isatty():
        fail(f"no terminal to ask on: pass --yes to confirm: {question}")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        fail("cancelled, nothing changed")


def may_ask(question: str, yes: bool, production: bool) -> None:
    """Fail now, before anything starts, where `confirm` could not ask."""
    if not yes and (production or not sys.stdin.isatty()):
        confirm(question, yes, production)
