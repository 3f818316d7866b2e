"""Docker and Compose: the engine's checks, a project per environment, and its commands."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from steps import PROJECT, name_of
from steps.commands import fail
from steps.environment import Env, export

NO_DOCKER = "or use DB_SERVER=local (PostgreSQL binaries, no Docker)"


def compose_file(env: Env) -> Path:
    return PROJECT / "compose" / f"{env.name}.yml"


def project_name(folder: Path) -> str:
    """`<project's name>-<hash of its path>`: no two clones share a project, volume or image."""
    name = re.sub(r"[^a-z0-9_-]+", "-", name_of(folder).lower()).strip("-_")[:30] or "app"
    return f"{name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


def default_web_image(env_name: str) -> str:
    """This clone's own web image: `<project_name>-web:dev` (development) or `:latest`."""
    return f"{project_name(PROJECT)}-web:{'dev' if env_name == 'development' else 'latest'}"


def compose_project(env: Env, suffix: str = "") -> str:
    """`<project>-<env>`, the project being COMPOSE_PROJECT_NAME when set, else this clone's."""
    base = env.vars.get("COMPOSE_PROJECT_NAME") or project_name(PROJECT)
    return f"{base}-{env.name}{suffix}"


def stack_name(env: Env) -> str:
    """`<project>-production-swarm`: not the Compose project's name, nor its network or volume."""
    return compose_project(env, "-swarm")


def compose_command(env: Env, project: str) -> list[str]:
    return ["docker", "compose", "-p", project, "-f", str(compose_file(env))]


def without_tty(args: list[str], interactive: bool | None = None) -> list[str]:
    """Compose's `exec` and `run` want a TTY: add -T when stdin is not one (CI, pipes)."""
    if sys.stdin.isatty() if interactive is None else interactive:
        return args
    for index, word in enumerate(args):
        if not word.startswith("-"):
            if word in ("exec", "run") and "-T" not in args:
                return [*args[: index + 1], "-T", *args[index + 1 :]]
            break
    return args


@functools.cache
def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    version = ["docker", "version", "--format", "{{.Server.Version}}"]
    try:
        return subprocess.run(version, capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def require_docker(alternative: str = NO_DOCKER) -> None:
    """One line saying what is missing, the client or the engine, and what else to do."""
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
        said = (result.stderr or result.stdout).strip().splitlines()
        last = said[-1] if said else f"exit {result.returncode}"
        if "is not a docker command" in last:
            fail(
                f"Docker Compose v2 (`docker compose`) is missing: install the compose plugin, {NO_DOCKER}"
            )
        fail(f"`docker compose {' '.join(args)}` failed: {last}")
    return result.stdout


def docker_list(kind: str, project: str, *options: str) -> str:
    """`docker ps`/`volume ls`/`network ls` of a Compose project (faster than `docker compose`)."""
    command = ["docker", kind] if kind == "ps" else ["docker", kind, "ls"]
    labels = ("--filter", f"label=com.docker.compose.project={project}")
    return subprocess.run([*command, *labels, *options], capture_output=True, text=True).stdout


def stack_database(env: Env) -> tuple[str, str] | None:
    """(container id, what runs it) of the environment's `db` running in Compose or Swarm."""
    if not docker_engine_answers():
        return None
    project, stack = compose_project(env), stack_name(env)
    where = {
        f"the Compose project {project}": (f"com.docker.compose.project={project}", "com.docker.compose.service=db"),
        f"the Swarm stack {stack}": (f"com.docker.stack.namespace={stack}", f"com.docker.swarm.service.name={stack}_db"),
    }  # fmt: skip
    for what, labels in where.items():
        filters = [word for label in labels for word in ("--filter", f"label={label}")]
        found = subprocess.run(
            ["docker", "ps", *filters, "--filter", "status=running", "--quiet"],
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        if found:
            return found[0], what
    return None
