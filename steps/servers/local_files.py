"""Where local PostgreSQL's files live (binaries, state, cache, scratch), and how to touch them
safely as root, in folders the server's account could have written. POSIX only."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from steps import PROJECT
from steps.commands import fail

if TYPE_CHECKING:
    from pwd import struct_passwd

# As root, the local server runs as this unprivileged system user.
SERVER_USER = "pglocal"
# Test clusters (throwaway, and the testing environment's): durability is worthless there.
TEST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def server_account(create: bool = True) -> struct_passwd | None:
    """The server's account: None (ourselves), or as root SERVER_USER (made on first use)."""
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
    """subprocess keywords that run a command as `account` (none when it is ourselves)."""
    if not account:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def project_key(project: Path = PROJECT) -> str:
    digest = hashlib.sha256(str(project).encode()).hexdigest()[:8]
    return f"{project.name}-{digest}"


def state_root(project: Path = PROJECT) -> Path:
    """Where persistent clusters live: the project's .postgres/, as root a folder outside homes."""
    # The server's account cannot enter a 0700 home, and no permission is loosened for it.
    if os.geteuid() == 0:
        return Path("/var/lib/pglocal") / project_key(project)
    return project / ".postgres"


def cache_root() -> Path:
    """Where template clusters (and, as root, binaries the server's account can reach) are kept."""
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
    """A new private folder in /tmp for a server's Unix socket, the server account's."""
    # Short: PostgreSQL refuses a socket path over 107 bytes, which a deep clone would reach.
    return give_to(Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp")), account)


def private_folder(path: Path, account: struct_passwd | None) -> bool:
    """Whether `path` is a folder (not a link) of ours or `account`'s that nobody else may enter."""
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


def write_private(path: Path, text: str, account: struct_passwd | None = None) -> Path:
    """A new file only its owner (us, or `account`) can read, never through a planted link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o600), "w") as handle:
        handle.write(text)
    return give_to(path, account)


def read_small_file(path: Path, limit: int | None = 4096) -> str:
    """A regular file's first `limit` bytes (None: its last 64 KiB), never via a symlink or FIFO."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path} is not a regular file")
        if limit is None:
            handle.seek(max(0, info.st_size - 65536))
        return handle.read(limit if limit is not None else 65536).decode(errors="replace")


def open_log(path: Path) -> int:
    """The server log opened for appending, refusing a symlink, a hard link or a FIFO."""
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
    """Whether `pid` is a postgres serving `data` as the server's account (no /proc: it runs)."""
    if not Path("/proc/self").is_dir():
        return process_alive(pid)
    proc = Path(f"/proc/{pid}")
    try:
        uid = proc.stat().st_uid
        args = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    account = server_account(create=False)
    serves = b"-D" in args[:-1] and args[args.index(b"-D") + 1] == os.fsencode(str(data))
    return (
        uid == (account.pw_uid if account else os.geteuid())
        and Path(os.fsdecode(args[0])).name == "postgres"
        and serves
        and process_alive(pid)
    )


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not reaped, does not)."""
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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One inv at a time in this block for `path` (two `inv dev` starting one cluster)."""
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cluster_home(env_name: str, project: Path = PROJECT) -> Path:
    """The folder of the environment's persistent cluster."""
    return state_root(project) / env_name


def password_file(env_name: str, project: Path = PROJECT) -> Path:
    """Where the superuser's password of the environment's cluster is kept (0600)."""
    return state_root(project) / f"{env_name}.password"


def socket_record(env_name: str, project: Path = PROJECT) -> Path:
    """Where the persistent server's socket folder is recorded: our folder, not the server's."""
    return state_root(project) / f"{env_name}.socket"
