"""PostgreSQL binaries run directly: a cluster per environment, throwaway ones on tmpfs.

As root the server runs as an unprivileged account (PostgreSQL refuses root). POSIX only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from steps import PROJECT
from steps.commands import signals_held
from steps.environment import Env
from steps.postgres import wait_until_ready
from steps.servers import Provider, task_for
from steps.servers.local_files import (
    TEST_SETTINGS,
    as_account,
    cluster_home,
    ensure_dir,
    give_to,
    is_postmaster_of,
    locked,
    open_log,
    password_file,
    private_folder,
    process_alive,
    read_small_file,
    scratch_root,
    server_account,
    socket_folder,
    socket_record,
    write_private,
)
from steps.servers.local_template import (
    SERVER_ENVIRONMENT,
    find_server_binaries,
    give_new_password,
    make_cluster,
    reachable_binaries,
)

if TYPE_CHECKING:
    from pwd import struct_passwd


@dataclass
class LocalCluster:
    """A cluster's folder (data/ and server.log), its binaries and its server's account."""

    home: Path
    bindir: Path | None = None
    account: struct_passwd | None = None
    password: str | None = None  # its superuser's, once made

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def recorded_postmaster(self) -> tuple[int, int] | None:
        """(pid, port) as postmaster.pid records them, whatever runs under that pid now."""
        try:
            lines = read_small_file(self.data / "postmaster.pid").splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of its running postmaster, checked: a stale or forged file names another."""
        recorded = self.recorded_postmaster()
        return recorded if recorded and is_postmaster_of(recorded[0], self.data) else None

    def why_it_stopped(self) -> str:
        """The log's last line about a full disk, else its last FATAL or PANIC, else its last."""
        with contextlib.suppress(OSError):
            tail = read_small_file(self.log, limit=None)
            lines = [line for line in tail.splitlines()[-50:] if line.strip()]
            for wanted in ("No space left on device", "FATAL", "PANIC"):
                found = next((line for line in reversed(lines) if wanted in line), None)
                if found:
                    return found
            return lines[-1] if lines else ""
        return ""


def start_postmaster(
    cluster: LocalCluster, port: int, socket: Path, settings: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Start postgres in its own session (a Ctrl-C for flask spares it), on a Unix socket only."""
    # A TCP port could be taken by another local user before the server binds it, and impersonated.
    listen = ("listen_addresses=", f"port={port}", f"unix_socket_directories={socket}")
    options = [f"-c{setting}" for setting in (*listen, *settings)]
    with os.fdopen(open_log(cluster.log), "ab") as log:
        return subprocess.Popen(
            [cluster.bindir / "postgres", "-D", cluster.data, *options],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=SERVER_ENVIRONMENT, **as_account(cluster.account),
        )  # fmt: skip


def stop_postmaster(
    cluster: LocalCluster, process: subprocess.Popen | None = None, immediate: bool = False
) -> bool:
    """Stop its server (fast shutdown, or immediate for throwaway data); True if it ran."""
    found = cluster.running()
    pid = process.pid if process else (found[0] if found else None)
    if pid is None or (process and process.poll() is not None):
        return False
    os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
    deadline = time.monotonic() + 30
    while (process.poll() is None) if process else process_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += 5
        time.sleep(0.01)
    return True


# Less free space than this where a cluster lives: the disk is what stopped its server.
NEARLY_FULL = 1024 * 1024


def exited(process: subprocess.Popen, cluster: LocalCluster) -> Callable[[], str | None]:
    def why() -> str | None:
        if process.poll() is None:
            return None
        reason = cluster.why_it_stopped()
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(cluster.home).free
            if free < NEARLY_FULL and "No space left on device" not in reason:
                # Its log is on that disk too, and may not hold the reason.
                reason = f"No space left on device where its data is ({free:,} bytes free)"
        return f"the PostgreSQL server exited ({process.returncode}): {reason} (log: {cluster.log})"

    return why


@contextlib.contextmanager
def throwaway_cluster(env: Env) -> Iterator[LocalCluster]:
    """A fresh cluster on tmpfs, not started, deleted on the way out with any server on it."""
    bindir, account = find_server_binaries(), server_account()
    remove_abandoned_clusters(account)
    home = Path(tempfile.mkdtemp(prefix="pglocal-test-", dir=scratch_root()))
    cluster = LocalCluster(home, reachable_binaries(bindir, account), account)
    try:
        # Who made it: this process's pid (to spot abandoned clusters), and for which project.
        (cluster.home / "owner").write_text(f"{os.getpid()}\n{PROJECT}\n")
        give_to(cluster.home, account)
        make_cluster(cluster, env)
        cluster.password = give_new_password(cluster, env["POSTGRES_USER"])
        yield cluster
    finally:
        with signals_held():
            stop_postmaster(cluster, immediate=True)
            shutil.rmtree(cluster.home, ignore_errors=True)


def remove_abandoned_clusters(account: struct_passwd | None) -> None:
    """Stop and delete our throwaway clusters whose inv was killed before it could."""
    uid = account.pw_uid if account else os.geteuid()
    for home in scratch_root().glob("pglocal-test-*"):
        try:
            if home.stat().st_uid != uid:
                continue
            owner = int(read_small_file(home / "owner").split()[0])
        except (OSError, ValueError):
            continue
        if not process_alive(owner):
            stop_postmaster(LocalCluster(home), immediate=True)
            shutil.rmtree(home, ignore_errors=True)


def local_port(env: Env) -> int:
    """The number in a local server's socket name (`.s.PGSQL.<port>`): its folder is its own."""
    return 5432 if env["POSTGRES_PORT"] == "auto" else int(env["POSTGRES_PORT"])


class LocalProvider(Provider):
    """PostgreSQL binaries run directly: a cluster per environment, throwaway ones on tmpfs."""

    label = "local"
    throwaway_socket: Path | None = None  # while a throwaway server runs

    @property
    def cluster(self) -> LocalCluster:
        return LocalCluster(cluster_home(self.env.name))

    @property
    def host(self) -> str:
        """The folder of the server's Unix socket: libpq takes it as the host."""
        if self.throwaway_socket:
            return str(self.throwaway_socket)
        with contextlib.suppress(OSError):
            folder = Path(read_small_file(socket_record(self.env.name)).strip())
            if private_folder(folder, server_account(create=False)):
                return str(folder)
        return ""

    @property
    def password_file(self) -> Path:
        return password_file(self.env.name)

    def running(self) -> int | None:
        found = self.cluster.running()
        if found and not self.host:  # started when local servers listened on TCP: restarted
            stop_postmaster(self.cluster)
            return None
        return found[1] if found else None

    def start(self) -> int:
        account = server_account()
        bindir = reachable_binaries(find_server_binaries(), account)
        cluster = LocalCluster(self.cluster.home, bindir, account)
        ensure_dir(cluster.home.parent)
        give_to(ensure_dir(cluster.home, 0o700), account)
        # The lock beside the cluster's folder, not in it: that folder is the server's.
        with locked(cluster.home.with_name(f"{cluster.home.name}.lock")):
            found = cluster.running()
            if found:  # another inv started it meanwhile
                return found[1]
            port = local_port(self.env)
            died = cluster.recorded_postmaster() is not None
            if died:
                # A killed server left postmaster.pid and its socket's lock: start anew.
                (cluster.data / "postmaster.pid").unlink(missing_ok=True)
            if not (cluster.data / "PG_VERSION").is_file():
                make_cluster(cluster, self.env)
            if not self.password_file.is_file():  # a new cluster, or its password never saved
                self.save_password(give_new_password(cluster, self.env["POSTGRES_USER"]))
            self.load_password()
            host = self.host
            socket = Path(host) if host and not died else self.new_socket_folder(account)
            settings = TEST_SETTINGS if self.env.name == "testing" else ()
            process = start_postmaster(cluster, port, socket, settings)
            wait_until_ready(
                self.env, str(socket), port, self.ready_timeout, gone=exited(process, cluster)
            )
        return port

    def stop(self) -> bool:
        stopped = stop_postmaster(self.cluster)
        self.remove_socket_folder()
        return stopped

    def remove_socket_folder(self) -> None:
        if host := self.host:
            shutil.rmtree(host, ignore_errors=True)
        socket_record(self.env.name).unlink(missing_ok=True)

    def new_socket_folder(self, account: struct_passwd | None) -> Path:
        """A new socket folder for the persistent server, recorded (`stop` removes it)."""
        self.remove_socket_folder()
        socket = socket_folder(account)
        write_private(socket_record(self.env.name), f"{socket}\n")
        return socket

    @contextlib.contextmanager
    def throwaway(self) -> Iterator[int]:
        with throwaway_cluster(self.env) as cluster, self.password_for_the_block(cluster.password):
            port, socket = local_port(self.env), socket_folder(cluster.account)
            process = None
            try:
                process = start_postmaster(cluster, port, socket, TEST_SETTINGS)
                self.throwaway_socket = socket
                wait_until_ready(
                    self.env, str(socket), port, self.ready_timeout, gone=exited(process, cluster)
                )
                yield port
            finally:
                with signals_held():
                    stop_postmaster(cluster, process, immediate=True)
                    self.throwaway_socket = None
                    shutil.rmtree(socket, ignore_errors=True)

    def where(self) -> str:
        cluster = self.cluster
        if not cluster.data.is_dir():
            return f"no cluster yet: `{task_for(self.env, 'db.up')}` makes it in {cluster.home}"
        return f"data {cluster.data}; log {cluster.log}; password in {self.password_file}"
