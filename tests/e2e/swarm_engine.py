"""Docker Swarm for the stack test and the rolling-update benchmark: a manager, HTTP inside."""

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

# The routing mesh needs IPVS, which some kernels lack; DNS round robin works everywhere.
ROUTING_MESH = Path("/proc/sys/net/ipv4/vs").is_dir()

# Runs in the stack's network, resolving `tasks.web` at each request: replicas come and go.
CLIENT = r"""
import itertools, json, select, socket, sys, time, urllib.error, urllib.request, uuid

base, requests = sys.argv[1], int(sys.argv[2])
counts, failures, turn = {}, [], itertools.count()

def target():
    if base != "dns":
        return base
    ips = sorted({a[4][0] for a in socket.getaddrinfo("tasks.web", 8000, proto=socket.IPPROTO_TCP)})
    return f"http://{ips[next(turn) % len(ips)]}:8000"

def call(method, path, body=None):
    url = target() + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None
    except Exception as error:
        return type(error).__name__, None

n = 0
while requests == 0 or n < requests:
    n += 1
    email = f"loop-{uuid.uuid4().hex}@example.com"
    status, created = call("POST", "/users", {"email": email})
    outcome = [("POST", status, 201)]
    if status == 201:
        got, user = call("GET", f"/users/{created['id']}")
        outcome.append(("GET", got, 200))
        if got == 200 and user["email"] != email:
            outcome.append(("GET", "wrong-row", 200))
    for method, got, want in outcome:
        key = f"{method} {got}"
        counts[key] = counts.get(key, 0) + 1
        if got != want:
            failures.append([round(time.time(), 2), method, got])
    if requests == 0 and select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.read(1):
        break
    time.sleep(0.02)
print(json.dumps({"counts": counts, "failures": failures}))
"""


def swarm_state() -> str:
    return subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@contextlib.contextmanager
def alone_with_the_engine_s_networks(tmp_path_factory) -> Iterator[None]:
    """The run's lock, held by modules that make Compose networks or turn swarm mode on or off."""
    # Docker 20.10 loses a container's DNS if swarm mode changes while Compose makes its network.
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's folder is in the run's
    with open(root / "docker-networks.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def swarm_manager() -> Iterator[None]:
    """This engine as a swarm manager for the block, left again if it was not one before."""
    before = swarm_state()
    if before != "active":
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            capture_output=True, check=True,
        )  # fmt: skip
    try:
        yield
    finally:
        if before != "active":
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)


def client_command(network: str, image: str, base: str, requests: int) -> list[str]:
    """The request loop in a container of `image` on `network`; `base`: a URL, or `dns`."""
    return [
        "docker", "run", "--rm", "-i", "--network", network, "--entrypoint", "python",
        image, "-c", CLIENT, base, str(requests),
    ]  # fmt: skip


def run_client(network: str, image: str, base: str, requests: int) -> dict:
    result = subprocess.run(
        client_command(network, image, base, requests),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def remove_images(repository: str, project_prefix: str) -> None:
    """Remove `repository` and the dangling images of Compose projects named `project_prefix*`."""
    ids = subprocess.run(
        ["docker", "image", "ls", "--quiet", repository], capture_output=True, text=True
    ).stdout.split()
    dangling = dangling_images()
    if dangling:
        labels = subprocess.run(
            ["docker", "image", "inspect", "--format",
             '{{.Id}} {{index .Config.Labels "com.docker.compose.project"}}', *dangling],
            capture_output=True, text=True,
        ).stdout.splitlines()  # fmt: skip
        pairs = (line.partition(" ") for line in labels)
        ids += [image for image, _, project in pairs if project.startswith(project_prefix)]
    if ids:
        subprocess.run(["docker", "image", "rm", "--force", *set(ids)], capture_output=True)


def dangling_images() -> list[str]:
    """Ids of the images no tag names any more (what rebuilds leave behind)."""
    return subprocess.run(
        ["docker", "image", "ls", "--quiet", "--filter", "dangling=true"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
