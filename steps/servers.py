"""Who runs PostgreSQL for an environment (DB_SERVER), and a server's lifetime around a task."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from steps.commands import say, sigterm_unwinds
from steps.environment import Env, export
from steps.postgres import READY_TIMEOUT, Servers, wait_until_ready


class ExternalServer(Servers):
    """Someone else's server at POSTGRES_HOSTNAME:POSTGRES_PORT: nothing to start or stop."""

    label = "external"
    ours = False

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


def db_servers(env: Env, ready_timeout: float = READY_TIMEOUT) -> Servers:
    """The servers DB_SERVER names; `auto` is compose when a Docker engine answers, else local."""
    from steps.compose import ComposeServers, docker_engine_answers
    from steps.local import LocalServers

    if env.db_server == "auto":
        if docker_engine_answers():
            why = "chosen by DB_SERVER=auto: a Docker engine answered"
            return ComposeServers(env, why, ready_timeout=ready_timeout)
        why = "chosen by DB_SERVER=auto: no Docker engine answered"
        return LocalServers(env, why, ready_timeout=ready_timeout)
    kinds = {"local": LocalServers, "compose": ComposeServers, "external": ExternalServer}
    return kinds[env.db_server](env, ready_timeout=ready_timeout)


def task_for(env: Env, task: str) -> str:
    """The command line that runs `task` on this env (APPLICATION_CONFIG names any but the default)."""
    prefix = "" if env.name == "development" else f"APPLICATION_CONFIG={env.name} "
    return f"{prefix}inv {task}"


@contextlib.contextmanager
def database_server(
    env: Env,
    throwaway: bool = False,
    ready_timeout: float = READY_TIMEOUT,
    servers: Servers | None = None,
    report: Callable[[str], None] = say,
) -> Iterator[tuple[str, int]]:
    """Server up -> wait until a connection succeeds; yields (host, port), exported for the app.

    throwaway: a server that lives only as long as this block (tests), unless a warm one
    started by `db.up` runs for this env, which is then used and left running.
    """
    servers = servers or db_servers(env, ready_timeout)
    if servers.ours:  # for every libpq client from here on: inv, the app, pytest, psql 16+
        export(PGREQUIREAUTH="scram-sha-256")
    host, port = servers.host, servers.running()
    if throwaway and port is None:
        with sigterm_unwinds(), servers.throwaway() as port:
            report(f"throwaway {env.name} PostgreSQL ({servers.describe()}) on {host}:{port}")
            export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
            yield host, port
        return
    if port is None:
        port = servers.start()
        report(
            f"started the {env.name} PostgreSQL server ({servers.describe()}) on {host}:{port}; `{task_for(env, 'db.down')}` stops it"
        )
    else:
        servers.load_password()
        wait_until_ready(env, host, port, timeout=ready_timeout)
        what = "using the warm" if throwaway else "the"
        left = ", left running" if throwaway else " is running"
        report(f"{what} {env.name} PostgreSQL server ({servers.describe()}) on {host}:{port}{left}")
    export(POSTGRES_HOSTNAME=host, POSTGRES_PORT=port)
    yield host, port


# The tests' server (host:port), exported once it is ready: pytest processes started after
# (xdist workers, the runs of `inv test --watch`) use it (steps/pytest_database.py).
TEST_DATABASE = "INV_TEST_DATABASE"


@contextlib.contextmanager
def database_for_tests(
    env: Env, ready_timeout: float = READY_TIMEOUT, report: Callable[[str], None] = say
) -> Iterator[tuple[str, int]]:
    """The tests' server: a throwaway one (or the warm one), its address exported."""
    with database_server(env, True, ready_timeout, report=report) as (host, port):
        export(**{TEST_DATABASE: f"{host}:{port}"})
        yield host, port
