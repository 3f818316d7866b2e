"""The production stack on Docker Swarm: compose/production.yml with compose/swarm.yml on top."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
from pathlib import Path

from steps import PROJECT
from steps.commands import fail
from steps.compose import compose_file, compose_or_fail, require_docker
from steps.environment import Env

# Compose keys `docker stack deploy` refuses or ignores: the web entry point waits for the
# database itself, Swarm restarts by deploy.restart_policy and never builds.
COMPOSE_ONLY_KEYS = ("build", "depends_on", "restart", "container_name")


def require_swarm_manager(c) -> None:
    require_docker(alternative="")
    info = "docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'"
    if c.run(info, hide=True, warn=True).stdout.split() != ["active", "true"]:
        fail(
            "this Docker engine is not a swarm manager: `docker swarm init` makes it one "
            "(a swarm of this machine), or run this on a manager of your swarm"
        )


def answering_address(port: int) -> str | None:
    """http://127.0.0.1:PORT/ once its /health answers there, or None after 10 s."""
    import urllib.request

    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}health", timeout=2):
                return url
        except OSError:
            time.sleep(0.5)
    return None


def require_production(env: Env) -> None:
    if env.name != "production":
        fail("a stack is the production stack: APPLICATION_CONFIG=production inv stack.<task>")


def tag_with_id(c, image: str) -> str:
    """Tag `image` with its id: Swarm rolls out a changed image, not an unchanged one."""
    command = ["docker", "image", "inspect", "--format", "{{.Id}}", image]
    inspect = c.run(shlex.join(command), hide=True, warn=True)
    if not inspect.ok:
        fail(f"the build made no image {image}: {inspect.stderr.strip()}")
    repository = image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image
    tag = f"{repository}:{inspect.stdout.strip().removeprefix('sha256:')[:12]}"
    c.run(shlex.join(["docker", "tag", image, tag]), hide=True)
    return tag


def swarm_spec(env: Env, stack: str) -> str:
    """compose/production.yml with compose/swarm.yml on top, read by `docker compose config`."""
    files = ["-f", str(compose_file(env)), "-f", str(PROJECT / "compose" / "swarm.yml")]
    config = compose_or_fail(env, stack, *files, "config", "--format", "json")
    return swarm_format(json.loads(config))


def swarm_format(spec: dict) -> str:
    """A resolved Compose spec in the file format `docker stack deploy` reads."""
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
    for definition in spec.get("configs", {}).values():
        # Swarm never changes a config: a changed file is a new one, which the service rolls to.
        content = Path(definition["file"]).read_bytes()
        definition["name"] += f"-{hashlib.sha256(content).hexdigest()[:12]}"
    spec.pop("name", None)
    return json.dumps({"version": "3.8", **spec})


def stack_leftovers(stack: str) -> str:
    """Ids of the stack's services, containers and networks still present."""
    label = ("--filter", f"label=com.docker.stack.namespace={stack}", "--quiet")
    listings = (["service", "ls"], ["ps", "--all"], ["network", "ls"])
    return "".join(
        subprocess.run(["docker", *kind, *label], capture_output=True, text=True).stdout
        for kind in listings
    )


def remove_stack(c, stack: str) -> None:
    """`docker stack rm`, then wait until its services, containers and networks are gone."""
    c.run(f"docker stack rm {stack}", hide=True, warn=True)
    deadline = time.monotonic() + 120
    while stack_leftovers(stack).strip():
        if time.monotonic() > deadline:
            fail(f"stack {stack} is still being removed after 120 s: `docker stack ps {stack}`")
        time.sleep(0.5)


def remove_stack_volumes(c, stack: str) -> tuple[list[str], list[str]]:
    """Delete the stack's volumes; returns those deleted and those Docker kept (in use)."""
    label = f"label=com.docker.stack.namespace={stack}"
    volumes = c.run(f"docker volume ls --quiet --filter {label}", hide=True, warn=True).stdout
    removed, kept = [], []
    for volume in volumes.split():
        deleted = c.run(f"docker volume rm {volume}", hide=True, warn=True).ok
        (removed if deleted else kept).append(volume)
    return removed, kept
