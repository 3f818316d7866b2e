"""The warm pytest: a process that has imported the libraries the tests use (pytest, coverage,
Flask, SQLAlchemy, ...) and forks a fresh pytest for each `inv test`, which then skips most of
a second of imports. `APPLICATION_CONFIG=testing inv db.up` starts it beside the warm server,
`db.down` stops it.

Only libraries are preloaded, never the project's own code (app/, tests/, steps/): each run
imports that afresh, so an edit shows in the next run. Which libraries: those earlier runs
imported (kept in the folder, a name per line). A run is served only if every preloaded file
is unchanged (a `pip install` makes the warm pytest step aside and start again) and the
PYTHON* variables are as they were; otherwise `inv test` runs pytest the ordinary way.

Its socket is in a 0700 folder of the user running inv, mode 0600, and it serves only
connections of its own uid (SO_PEERCRED). POSIX only (fork, descriptor passing).

This module is the client side (`inv test`, `db.up`, `db.down`) and what both sides share;
the server is steps/warm_pytest_server.py. No well-kept library does this: pytest-hot-reloading
patches modules in place (jurigged) and says it may get into a bad state, whereas a fork of a
clean preloaded process cannot.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from steps import PROJECT

SOCKET = "socket"
MODULES = "modules"
LOG = "log"
READY_TIMEOUT = 30.0
# For its first answer (it may be importing what the last run taught it); then, the run's time.
HANDSHAKE_TIMEOUT = 30.0


def folder_path(project: Path = PROJECT) -> Path:
    """Where the warm pytest lives: beside the test server's state."""
    from steps.local_files import state_root

    return state_root(project) / "warm-pytest"


def folder() -> Path | None:
    """The warm pytest's folder, or None when it is missing or not ours alone: a 0700
    directory of our uid, not a symlink."""
    descriptor = open_folder(folder_path())
    if descriptor is None:
        return None
    os.close(descriptor)
    return folder_path()


def open_folder(path: Path) -> int | None:
    """A descriptor of `path` if it is a 0700 directory of our uid, not a symlink; what is
    in it is then opened relative to that descriptor, whatever becomes of the path."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(descriptor)
    if info.st_uid == os.geteuid() and not info.st_mode & 0o077:
        return descriptor
    os.close(descriptor)
    return None


def python_variables(environ: dict[str, str]) -> dict[str, str]:
    """What the interpreter read when it started (warnings, paths, hash seed, ...)."""
    return {k: v for k, v in environ.items() if k.startswith("PYTHON")}


def peer(connection: socket.socket) -> tuple[int | None, int]:
    """The (pid, uid) of the process at the other end, as the kernel says."""
    if not hasattr(socket, "SO_PEERCRED"):  # Linux; elsewhere, the folder's mode protects it
        return None, os.geteuid()
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid, uid, _ = struct.unpack("3i", credentials)
    return pid, uid


def peer_uid(connection: socket.socket) -> int:
    return peer(connection)[1]


def send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def receive(connection: socket.socket, buffer: bytearray) -> dict | None:
    """The next newline-terminated JSON message, or None once the other side has closed."""
    while b"\n" not in buffer:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def connect() -> socket.socket | None:
    """A connection to our warm pytest, or None when none answers."""
    where = folder()
    if where is None:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(where / SOCKET))
        if peer_uid(connection) != os.geteuid():
            raise OSError("the socket's server is not ours")
    except OSError:
        connection.close()
        return None
    return connection


def log() -> Path:
    """Where the warm pytest writes what it has to say (why it did not start, say)."""
    return folder_path() / LOG


def running() -> bool:
    connection = connect()
    if connection:
        connection.close()
    return connection is not None


# The client: `inv test`, `inv db.up`, `inv db.down`.


def start(wait: bool = True) -> bool:
    """Start the warm pytest unless one answers; with `wait`, until it answers (its preload
    takes a second or two). False when it could not start (the log says why)."""
    if running():
        return True
    from steps.local_files import ensure_dir

    where = folder_path()
    ensure_dir(where.parent)
    with contextlib.suppress(FileExistsError):
        where.mkdir(mode=0o700)
    descriptor = open_folder(where)
    if descriptor is None:
        return False
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        output = os.open(LOG, flags, 0o600, dir_fd=descriptor)
    finally:
        os.close(descriptor)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "steps.warm_pytest_server", str(where)],
            cwd=PROJECT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,  # neither a Ctrl-C nor the end of this inv reaches it
        )
    finally:
        os.close(output)
    deadline = time.monotonic() + READY_TIMEOUT
    while wait and time.monotonic() < deadline:
        if running():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return not wait


def stop() -> bool:
    """Stop the warm pytest (and any run it serves); False when none was running."""
    connection = connect()
    if connection is None:
        return False
    from steps.local_files import process_alive

    with connection:
        pid, _ = peer(connection)
        send_request(connection, {"stop": True})
        connection.settimeout(30)
        with contextlib.suppress(OSError):
            while connection.recv(4096):
                pass
    deadline = time.monotonic() + 10
    while pid and process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # its last moments, after it has closed the connection
    return True


def run_warm(args: list[str], cwd: Path) -> int | None:
    """pytest `args` in a fork of the warm pytest, in `cwd`, with this process's environment,
    terminal and signals; its exit code, or None when no warm pytest serves this run."""
    from steps.commands import say

    connection = connect()
    if connection is None:
        return None
    with connection:
        request = {
            "args": args,
            "cwd": str(cwd),
            "environ": dict(os.environ),
            "umask": current_umask(),
            "executable": sys.executable,
            "sent": time.time(),
        }
        buffer = bytearray()
        try:
            send_request(connection, request, [0, 1, 2])
            connection.settimeout(HANDSHAKE_TIMEOUT)
            answer = receive(connection, buffer)
            connection.settimeout(None)
        except (OSError, ValueError) as error:
            say(f"the warm pytest did not answer ({error}): pytest runs the ordinary way")
            return None
        if answer is None or "pid" not in answer:
            if answer and answer.get("restart"):
                say(f"the warm pytest stepped aside ({answer['restart']}); it starts again")
            elif answer and answer.get("aside"):
                say(f"the warm pytest cannot serve this run ({answer['aside']})")
            return None
        say(f"pytest runs in a fork of the warm pytest (pid {answer['pid']})")
        return wait_for_exit_code(connection, buffer, answer["pid"])


def send_request(connection: socket.socket, request: dict, descriptors: list[int] = ()) -> None:
    """The request's length with our descriptors attached (the run's stdin, stdout, stderr),
    then the request."""
    body = json.dumps(request).encode()
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", descriptors).tobytes())]
    connection.sendmsg([struct.pack("!I", len(body))], rights if descriptors else [])
    connection.sendall(body)


def current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def wait_for_exit_code(connection: socket.socket, buffer: bytearray, pid: int) -> int:
    """Wait for the fork's exit code, forwarding signals to it meanwhile."""
    from steps import commands

    def deliver(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if signum == signal.SIGINT and commands.interrupt_came_from_terminal():
                os.killpg(pid, signum)  # as the terminal would: the run has its own group
            else:
                os.kill(pid, signum)

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with commands.signals_forwarded(deliver, forwarded) as received:
        try:
            answer = receive(connection, buffer)
        except (OSError, ValueError):
            answer = None
    if answer is None:
        commands.say("the warm pytest ended this run without an exit code")
    return commands.exit_code(answer["exit"] if answer else 1, received)
