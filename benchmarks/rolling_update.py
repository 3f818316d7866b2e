"""How many requests fail while Docker Swarm rolls out a new image of the web service.

python benchmarks/rolling_update.py [--runs 3] [--replicas 3] [--quick]
"""

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "tests" / "e2e"), str(PROJECT)]
from project_copy import clean_environ, free_port, make_copy  # noqa: E402
from swarm_engine import ROUTING_MESH, client_command, remove_images, swarm_manager  # noqa: E402

from steps import compose  # noqa: E402

INV = [sys.executable, "-m", "invoke"]


def inv(root: Path, environ: dict, *args: str) -> None:
    result = subprocess.run([*INV, *args], cwd=root, env=environ, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"`inv {' '.join(args)}` failed: {result.stderr.strip()}")


def service_image(stack: str) -> str:
    return subprocess.run(
        ["docker", "service", "inspect", "--format",
         "{{.Spec.TaskTemplate.ContainerSpec.Image}}", f"{stack}_web"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def one_update(root: Path, environ: dict, stack: str, number: int) -> dict:
    """A request loop running before, during and after one rolling update; its counts."""
    image = service_image(stack)
    port = environ["WEB_PORT"]
    base = f"http://127.0.0.1:{port}" if ROUTING_MESH else "http://tasks.proxy"
    network = "host" if ROUTING_MESH else f"{stack}_default"
    client = subprocess.Popen(
        client_command(network, image, base, 0),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    with (root / "wsgi.py").open("a") as source:
        source.write(f"# rolling update {number}\n")  # a changed file: a new image
    started = time.monotonic()
    inv(root, environ, "stack.deploy")
    seconds = time.monotonic() - started
    time.sleep(3)
    output, errors = client.communicate("", timeout=60)
    if client.returncode != 0:
        sys.exit(f"the request loop failed: {errors.strip()}")
    result = json.loads(output.strip().splitlines()[-1])
    new_image = service_image(stack)
    if new_image == image:
        sys.exit("the update did not change the service's image")
    total = sum(result["counts"].values())
    failed = len(result["failures"])
    return {"requests": total, "failed": failed, "seconds": seconds, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rolling updates to measure")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one update of 2 replicas")
    options = parser.parse_args()
    if options.quick:
        options.runs, options.replicas = 1, 2

    with tempfile.TemporaryDirectory(prefix="rolling-") as folder, swarm_manager():
        root = make_copy(Path(folder))
        stack = f"{compose.project_name(root.resolve())}-production-swarm"
        repository = f"{compose.project_name(root.resolve())}-web"
        environ = clean_environ(
            "compose",
            APPLICATION_CONFIG="production",
            SECRET_KEY=secrets.token_hex(32),
            POSTGRES_PASSWORD=secrets.token_hex(8),
            WEB_IMAGE=f"{repository}:latest",
            WEB_PORT=str(free_port()),
            WEB_REPLICAS=str(options.replicas),
        )
        try:
            via = "the routing mesh" if ROUTING_MESH else "tasks.proxy (no IPVS here)"
            print(f"{options.replicas} replicas; requests to the proxy through {via}", flush=True)
            inv(root, environ, "stack.deploy")
            results = []
            for number in range(1, options.runs + 1):
                result = one_update(root, environ, stack, number)
                results.append(result)
                print(
                    f"update {number}: {result['requests']} requests, {result['failed']} failed, "
                    f"rolled out in {result['seconds']:.1f} s; {result['counts']}"
                    + (f"; failures: {result['failures']}" if result["failures"] else ""),
                    flush=True,
                )
            failed = [r["failed"] for r in results]
            seconds = [r["seconds"] for r in results]
            print(
                f"median over {len(results)} updates: {statistics.median(failed):g} failed of "
                f"{statistics.median(r['requests'] for r in results):g} requests; "
                f"rollout {statistics.median(seconds):.1f} s"
            )
        finally:
            subprocess.run(
                [*INV, "stack.rm", "--volumes", "--yes"], cwd=root, env=environ, capture_output=True
            )
            remove_images(repository, root.name.lower())


if __name__ == "__main__":
    main()
