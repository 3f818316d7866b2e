"""PostgreSQL as the `db` service of compose/<env>.yml; throwaway projects for tests."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from steps.commands import fail, signals_held
from steps.compose import (
    compose_command,
    compose_or_fail,
    compose_project,
    compose_run,
    docker_list,
    require_docker,
    without_tty,
)
from steps.environment import Env
from steps.postgres import LOOPBACK, busy_port_error, port_is_free, set_password, wait_until_ready
from steps.servers import Provider, task_for
from steps.servers.local_files import password_file, process_alive


def compose_db_port(project: str) -> int | None:
    """The host port of the project's running `db`, or None when it does not run."""
    ports = docker_list(
        "ps", project, "--filter", "label=com.docker.compose.service=db",
        "--filter", "status=running", "--format", "{{.Ports}}",
    )  # fmt: skip
    published = re.search(r":(\d+)->5432/tcp", ports)
    return int(published.group(1)) if published else None


def remove_abandoned_projects(env: Env) -> None:
    """Remove the throwaway projects (`<project>-testing-<pid>-<hex>`) whose inv was killed."""
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
    """Remove a throwaway project's containers, volumes and networks."""
    # `docker rm -f -v` is fast; `compose down` (slow) only for a network or named volume left.
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


def compose_db_gone(env: Env, project: str) -> Callable[[], str | None]:
    """Why the `db` container is gone, checked once a second (docker calls are slow)."""
    last = [time.monotonic()]

    def why() -> str | None:
        if time.monotonic() - last[0] < 1:
            return None
        last[0] = time.monotonic()
        if compose_db_port(project) is not None:
            return None
        logs = compose_run(env, project, "logs", "--no-log-prefix", "--tail", "3", "db").stdout
        tail = " / ".join(line.strip() for line in logs.strip().splitlines())
        hint = task_for(env, "compose -- logs db")
        return f"the `db` container of {project} stopped: {tail} (`{hint}`)"

    return why


class ComposeProvider(Provider):
    """The `db` service of compose/<env>.yml in project <project>-<env>."""

    label = "compose"

    def __init__(self, env: Env, why: str = "", **options: float) -> None:
        super().__init__(env, why, **options)
        require_docker()
        self.project = compose_project(env)

    def running(self) -> int | None:
        return compose_db_port(self.project)

    @property
    def password_file(self) -> Path:
        return password_file(f"{self.env.name}.compose")

    def start(self) -> int:
        if self.env.production:  # its `db` publishes no port: it serves the stack's web
            fail(
                "the production database on Compose is its stack's, with no port published: "
                f"`{task_for(self.env, 'compose -- up -d')}` starts the stack; "
                f"`{task_for(self.env, 'db.shell')}` and db.dump reach its database there"
            )
        if self.env["POSTGRES_PORT"] != "auto" and not port_is_free(int(self.env["POSTGRES_PORT"])):
            busy_port_error(self.env, int(self.env["POSTGRES_PORT"]))
        own_password = self.use_own_password()
        port = self._up(self.project)
        if not own_password:  # its volume was made with the committed password: a random one now
            self.save_password(set_password(self.env, LOOPBACK, port, secrets.token_urlsafe(24)))
        return port

    def use_own_password(self) -> bool:
        """Use the `db` volume's own password (a new volume's: random); False if it has the committed one."""
        if self.password_file.is_file():
            self.load_password()
            return True
        if docker_list("volume", self.project, "--quiet").strip():
            return False
        self.save_password(secrets.token_urlsafe(24))
        return True

    def _up(self, project: str) -> int:
        compose_or_fail(self.env, project, "up", "--detach", "db")
        port = compose_db_port(project)
        if port is None:
            hint = task_for(self.env, "compose -- logs db")
            fail(f"the `db` container of {project} did not stay up: `{hint}`")
        # A first start of the image runs initdb before it listens: twice the usual wait.
        timeout = 2 * self.ready_timeout
        wait_until_ready(self.env, LOOPBACK, port, timeout, compose_db_gone(self.env, project))
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
            with self.password_for_the_block(secrets.token_urlsafe(24)):
                yield self._up(project)
        finally:
            with signals_held():
                remove_compose_project(self.env, project)

    @property
    def keeps_data(self) -> bool:
        return self.env.name != "testing"  # compose/testing.yml: the data is on tmpfs

    def where(self) -> str:
        data = "data in its volume" if self.keeps_data else "data on tmpfs, gone when it stops"
        return (
            f"project {self.project}; {data}; password in {self.password_file}; "
            f"log: `{task_for(self.env, 'compose -- logs db')}`"
        )

    def client(self, program: str, port: int, database: str, tty: bool = False) -> list[str]:
        """The client inside the `db` container: the server's own version."""
        command = ["exec", "db", program, "-U", self.env["POSTGRES_USER"], "-d", database]
        return [*compose_command(self.env, self.project), *without_tty(command, tty)]
