"""Who provides PostgreSQL for an environment (DB_SERVER), and a server's lifetime around a task."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from invoke import Exit

from steps.commands import say, sigterm_unwinds
from steps.environment import Env, export, exported
from steps.postgres import LOOPBACK, READY_TIMEOUT, wait_until_ready
from steps.servers.local_files import ensure_dir, project_key, read_small_file, write_private
from steps.servers.local_template import find_server_binaries


class Provider:
    """Who runs PostgreSQL for an environment: its persistent server, and throwaway ones."""

    label = ""
    host = LOOPBACK
    # Started by the project with a SCRAM password: libpq refuses to send an impostor the password.
    ours = True
    keeps_data = True  # its data outlives a stop
    # Where the random superuser password of a server the project made is kept (0600).
    password_file: Path | None = None

    def __init__(self, env: Env, why: str = "", ready_timeout: float = READY_TIMEOUT) -> None:
        self.env = env
        self.why = why
        self.ready_timeout = ready_timeout

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

    def use_password(self, password: str) -> None:
        self.env.vars["POSTGRES_PASSWORD"] = password
        export(POSTGRES_PASSWORD=password)

    def load_password(self) -> None:
        """Use the persistent server's own password, where it has one."""
        if self.password_file:
            with contextlib.suppress(OSError):
                self.use_password(read_small_file(self.password_file).strip())

    def save_password(self, password: str) -> None:
        ensure_dir(self.password_file.parent)
        self.password_file.unlink(missing_ok=True)
        write_private(self.password_file, password + "\n")
        self.use_password(password)

    @contextlib.contextmanager
    def password_for_the_block(self, password: str) -> Iterator[None]:
        """A throwaway server's password for this block; the previous one after it."""
        before = self.env.vars.get("POSTGRES_PASSWORD", "")
        self.env.vars["POSTGRES_PASSWORD"] = password
        try:
            with exported(POSTGRES_PASSWORD=password):
                yield
        finally:
            self.env.vars["POSTGRES_PASSWORD"] = before

    def client(self, program: str, port: int, database: str, tty: bool = False) -> list[str]:
        """A PostgreSQL client (psql, pg_dump, pg_restore) on `database`."""
        user, host = self.env["POSTGRES_USER"], self.host
        return [client_program(program), "-h", host, "-p", str(port), "-U", user, "-d", database]


def client_program(program: str) -> str:
    """The local server binaries' `program`, usually the newest (pg_dump refuses a newer
    server), else PATH's."""
    try:
        return str(find_server_binaries() / program)
    except Exit:  # no server binaries here
        return shutil.which(program) or program


def app_database_client(env: Env, port: int, program: str, tty: bool = False) -> list[str]:
    """`program` (psql, pg_dump, pg_restore) on the app's database on the environment's server."""
    export(PGPASSWORD=env["POSTGRES_PASSWORD"])  # not on the command line, which others can read
    return provider_for(env).client(program, port, env["APPLICATION_DB"], tty)


def provider_for(env: Env, ready_timeout: float = READY_TIMEOUT) -> Provider:
    """The provider DB_SERVER names; `auto` is compose when a Docker engine answers, else local."""
    from steps.compose import docker_engine_answers
    from steps.servers.compose import ComposeProvider
    from steps.servers.external import ExternalProvider
    from steps.servers.local import LocalProvider

    kinds = {"local": LocalProvider, "compose": ComposeProvider, "external": ExternalProvider}
    if env.db_server != "auto":
        return kinds[env.db_server](env, ready_timeout=ready_timeout)
    answered = docker_engine_answers()
    why = f"chosen by DB_SERVER=auto: {'a' if answered else 'no'} Docker engine answered"
    return (ComposeProvider if answered else LocalProvider)(env, why, ready_timeout=ready_timeout)


def task_for(env: Env, task: str) -> str:
    """The command line that runs `task` on this environment."""
    prefix = "" if env.name == "development" else f"APPLICATION_CONFIG={env.name} "
    return f"{prefix}inv {task}"


@contextlib.contextmanager
def database_server(
    env: Env,
    throwaway: bool = False,
    ready_timeout: float = READY_TIMEOUT,
    provider: Provider | None = None,
    report: Callable[[str], None] = say,
) -> Iterator[tuple[str, int]]:
    """Server up -> wait for a connection; yields (host, port), exported for the app.

    throwaway: a server for this block only, unless a warm one (`db.up`) runs: it is used.
    """
    provider = provider or provider_for(env, ready_timeout)
    if provider.ours:  # for every libpq client from here on: inv, the app, pytest, psql 16+
        export(PGREQUIREAUTH="scram-sha-256")
    port = provider.running()
    if throwaway and port is None:
        with sigterm_unwinds(), provider.throwaway() as port:
            host = provider.host  # a local server's socket folder is known once it runs
            report(f"throwaway {env.name} PostgreSQL ({provider.describe()}) on {host}:{port}")
            export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
            yield host, port
        return
    if port is None:
        port = provider.start()
        host = provider.host
        report(
            f"started the {env.name} PostgreSQL server ({provider.describe()}) on {host}:{port}; `{task_for(env, 'db.down')}` stops it"
        )
    else:
        host = provider.host
        provider.load_password()
        wait_until_ready(env, host, port, timeout=ready_timeout)
        what = "using the warm" if throwaway else "the"
        left = ", left running" if throwaway else " is running"
        report(
            f"{what} {env.name} PostgreSQL server ({provider.describe()}) on {host}:{port}{left}"
        )
    export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
    yield host, port


def clone_databases(env: Env) -> tuple[str, str]:
    """The name prefixes of this clone's test templates and of its processes' databases (+ pid)."""
    prefix = f"{env['APPLICATION_DB']}_{project_key().rsplit('-', 1)[1]}"  # the path's hash
    return f"{prefix}_template_", f"{prefix}_pid"


# The tests' server (host:port), exported for the pytest processes started after (xdist, --watch).
TEST_DATABASE = "INV_TEST_DATABASE"


@contextlib.contextmanager
def database_for_tests(
    env: Env, ready_timeout: float = READY_TIMEOUT, report: Callable[[str], None] = say
) -> Iterator[tuple[str, int]]:
    """The tests' server: a throwaway one (or the warm one), its address exported."""
    with database_server(env, True, ready_timeout, report=report) as (host, port):
        export(**{TEST_DATABASE: f"{host}:{port}"})
        yield host, port
