"""The warm pytest's server (steps/warm_pytest.py says what it is): `python -m
steps.warm_pytest_server FOLDER`, started by warm_pytest.start(). It preloads the libraries,
then accepts one connection per run, forks, and sends the fork's exit code back.
"""

from __future__ import annotations

import array
import contextlib
import gc
import importlib
import json
import os
import select
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from steps import PROJECT
from steps.warm_pytest import (
    HANDSHAKE_TIMEOUT,
    MODULES,
    SOCKET,
    open_folder,
    peer_uid,
    python_variables,
    send,
)

# What the warm pytest always preloads; the rest it learns from the runs.
ALWAYS = ("pytest", "coverage", "pytest_cov.plugin")
ENVIRONMENT = Path(sys.prefix).resolve()
# Its own code, and what it shares with the client: an edit to either restarts it.
OWN_CODE = (__file__, str(Path(__file__).with_name("warm_pytest.py")))


def project_file(path: str | None) -> bool:
    """A file of the project's own code (a virtualenv inside the project is not)."""
    if not path:
        return False
    resolved = Path(path).resolve()
    return resolved.is_relative_to(PROJECT) and not resolved.is_relative_to(ENVIRONMENT)


def module_file(module: object) -> str | None:
    path = getattr(module, "__file__", None)
    return path if isinstance(path, str) and os.path.isfile(path) else None


def preload(names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    project = [n for n, m in sys.modules.items() if project_file(module_file(m))]
    for name in project:
        if name != "__main__":
            del sys.modules[name]  # steps.* (this module's package): each run imports its own
    gc.collect()
    gc.freeze()  # the preloaded heap is never garbage: no fork need walk it


def learned_names(folder: int) -> list[str]:
    """The module names in the folder's `modules` (a descriptor of the folder); never a
    `__main__`, which runs a program when imported."""
    with contextlib.suppress(OSError):
        descriptor = os.open(MODULES, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        with open(descriptor) as file:
            return [name for name in file.read().split() if valid_module_name(name)]
    return []


def valid_module_name(name: str) -> bool:
    return all(part.isidentifier() and part != "__main__" for part in name.split("."))


def pytest_plugin_packages() -> set[str]:
    """The top-level modules of installed pytest plugins (schemathesis, hypothesis, anyio):
    pytest rewrites their asserts as it imports them, and warns when they were imported
    before, so they are never preloaded."""
    import importlib.metadata

    names = set()
    for dist in importlib.metadata.distributions():
        if any(point.group == "pytest11" for point in dist.entry_points):
            for file in dist.files or []:
                if file.suffix == ".py" and ".dist-info" not in file.parts[0]:
                    names.add(file.parts[0].removesuffix(".py"))
    return names


def library_files() -> dict[str, int]:
    """Each preloaded module's file and its modification time."""
    files = {}
    for module in list(sys.modules.values()):
        path = module_file(module)
        if path and not project_file(path):
            with contextlib.suppress(OSError):
                files[path] = os.stat(path).st_mtime_ns
    return files


def changed_file(files: dict[str, int]) -> str | None:
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return path
        except OSError:
            return path
    return None


class WarmPytest:
    """The accept loop: one fork per run, its exit code sent back when it ends."""

    def __init__(self, folder: int) -> None:
        self.folder = folder  # a descriptor: the server's working folder, and its forks' way in
        self.started_with = python_variables(dict(os.environ))
        self.runs: dict[int, tuple[socket.socket, int]] = {}  # pid -> (connection, pidfd)
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.restarting = False

    def load(self) -> None:
        self.plugins = pytest_plugin_packages()
        preload([*ALWAYS, *self.preloadable(learned_names(self.folder))])
        self.files = library_files()
        self.files.update({path: os.stat(path).st_mtime_ns for path in OWN_CODE})

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET, dir_fd=self.folder)
        mask = os.umask(0o177)
        try:
            listener.bind(SOCKET)  # relative: the server's working folder is its folder
        finally:
            os.umask(mask)
        listener.listen(16)
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        print(f"warm pytest {os.getpid()}: serving {len(self.files)} preloaded files", flush=True)
        stopped_runs = False
        while not (self.stopping and not self.runs):
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self.accept()
                elif isinstance(key.data, int):
                    self.finished(key.data)
                else:  # the client's connection: readable before the end means it is gone
                    self.client_gone(key.data)
            if self.stopping and not stopped_runs:
                self.stop_runs()
                stopped_runs = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET, dir_fd=self.folder)

    def accept(self) -> None:
        connection, _ = self.listener.accept()
        if peer_uid(connection) != os.geteuid():
            connection.close()
            return
        try:
            connection.settimeout(5)
            request, descriptors = self.read_request(connection)
        except (OSError, ValueError):
            connection.close()
            return
        try:
            if request.get("stop"):
                self.stopping = True
                self.stopper = connection
                return
            refusal = self.refusal(request)
            if refusal:
                send(connection, refusal)
                connection.close()
                if "restart" in refusal:
                    self.stopping = self.restarting = True
                return
            self.fork(connection, request, descriptors)
        finally:
            for fd in descriptors:
                os.close(fd)

    def read_request(self, connection: socket.socket) -> tuple[dict, list[int]]:
        header, ancillary, _, _ = connection.recvmsg(4, socket.CMSG_SPACE(3 * 4))
        descriptors: list[int] = []
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                descriptors += array.array("i", data[: len(data) - len(data) % 4])
        if len(header) < 4:
            for fd in descriptors:
                os.close(fd)
            raise ValueError("no request")
        (length,) = struct.unpack("!I", header)
        body = bytearray()
        while len(body) < length:
            chunk = connection.recv(min(65536, length - len(body)))
            if not chunk:
                raise ValueError("request cut short")
            body += chunk
        return json.loads(body), descriptors

    def refusal(self, request: dict) -> dict | None:
        if time.time() - request.get("sent", 0) > HANDSHAKE_TIMEOUT:
            return {"aside": "the request waited too long: its inv has given up"}
        if request.get("executable") != sys.executable:
            return {"aside": f"it runs {sys.executable}, this inv {request.get('executable')}"}
        if python_variables(request["environ"]) != self.started_with:
            return {"aside": "PYTHON* variables differ from when it started"}
        changed = changed_file(self.files)
        if changed:
            return {"restart": f"{changed} changed since it started"}
        import threading

        if threading.active_count() > 1:
            return {"aside": "a preloaded module started a thread: forking is unsafe"}
        return None

    def fork(self, connection: socket.socket, request: dict, descriptors: list[int]) -> None:
        if len(descriptors) != 3 or client_left(connection):
            connection.close()
            return
        pid = os.fork()
        if pid == 0:
            try:
                code = self.run_in_fork(connection, request, descriptors)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        pidfd = os.pidfd_open(pid)
        self.runs[pid] = (connection, pidfd)
        self.selector.register(pidfd, selectors.EVENT_READ, pid)
        self.selector.register(connection, selectors.EVENT_READ, connection)

    def run_in_fork(self, connection: socket.socket, request: dict, descriptors: list[int]) -> int:
        os.setpgid(0, 0)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.listener.close()
        for other, pidfd in self.runs.values():
            other.close()
            os.close(pidfd)
        for target, fd in enumerate(descriptors):
            os.dup2(fd, target)
        for fd in set(descriptors) - {0, 1, 2}:
            os.close(fd)  # received copies: the run has them as 0, 1 and 2 now
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["environ"])
        reopen_standard_streams()
        sys.argv = [sys.executable, *request["args"]]
        sys.path[0] = request["cwd"]
        send(connection, {"pid": os.getpid()})
        before = set(sys.modules)
        import pytest

        code = int(pytest.main(request["args"]))
        self.remember(set(sys.modules) - before)
        return code

    def remember(self, new: set[str]) -> None:
        """The libraries this run imported join the preload of the next warm pytest."""
        files = {name: module_file(sys.modules.get(name)) for name in new}
        names = {n for n in self.preloadable(new) if files[n] and not project_file(files[n])}
        if not names:
            return
        known = set(learned_names(self.folder))
        if names <= known:
            return
        scratch = f"{MODULES}.{os.getpid()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(os.open(scratch, flags, 0o600, dir_fd=self.folder), "w") as file:
            file.write("\n".join(sorted(known | names)) + "\n")
        os.replace(scratch, MODULES, src_dir_fd=self.folder, dst_dir_fd=self.folder)

    def preloadable(self, names) -> list[str]:
        """Module names fit to preload: no pytest plugin, no `__main__`."""
        return [n for n in names if valid_module_name(n) and n.split(".")[0] not in self.plugins]

    def finished(self, pid: int) -> None:
        connection, pidfd = self.runs.pop(pid)
        _, status = os.waitpid(pid, 0)
        self.selector.unregister(pidfd)
        with contextlib.suppress(KeyError):  # unless client_gone did
            self.selector.unregister(connection)
        os.close(pidfd)
        with contextlib.suppress(OSError):
            send(connection, {"exit": os.waitstatus_to_exitcode(status)})
        connection.close()
        learned = set(self.preloadable(learned_names(self.folder))) - set(sys.modules)
        if learned and not self.stopping:
            preload(sorted(learned))  # between runs, so that the next one has them
            self.files.update(library_files())

    def client_gone(self, connection: socket.socket) -> None:
        for pid, (other, _) in self.runs.items():
            if other is connection:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
        self.selector.unregister(connection)

    def stop_runs(self) -> None:
        for pid in self.runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


def client_left(connection: socket.socket) -> bool:
    """Whether the client has closed its end (it gave up waiting, say): nothing to run for."""
    if not select.select([connection], [], [], 0)[0]:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def reopen_standard_streams() -> None:
    """sys.std* again, on the client's descriptors (a terminal gets line buffering)."""
    encoding = os.environ.get("PYTHONIOENCODING") or None
    sys.stdin = sys.__stdin__ = open(0, closefd=False, encoding=encoding)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(  # noqa: SIM115
        1, "w", buffering=1 if os.isatty(1) else -1, encoding=encoding, closefd=False
    )
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
    )


@contextlib.contextmanager
def only_instance() -> Iterator[bool]:
    """True for the one warm pytest of this folder (a second `db.up` may race the first)."""
    import fcntl

    fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        # A few seconds' patience: the one it replaces (stepped aside) may still be leaving.
        for _ in range(100):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                time.sleep(0.1)
        else:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def main(where: Path) -> None:
    descriptor = open_folder(where)
    if descriptor is None:
        raise SystemExit(f"warm pytest: {where} is not a private folder of this user")
    sys.path[0] = str(PROJECT)
    os.fchdir(descriptor)
    with only_instance() as alone:
        if not alone:
            return
        server = WarmPytest(descriptor)
        server.load()
        server.serve()
    if server.restarting:  # afresh, with the changed files: same arguments, same environment
        os.chdir(PROJECT)
        os.execv(sys.executable, [sys.executable, "-m", "steps.warm_pytest_server", str(where)])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
