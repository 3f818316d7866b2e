"""The Compose path on a real Docker engine, through the real `inv`, in a copy of the project."""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psycopg2
import pytest
from project_copy import (
    INV,
    TIMEOUT,
    clean_environ,
    fetch_when_up,
    free_port,
    make_copy,
    run_inv,
    skip_module_without_docker_engine,
    start_inv,
    wait_for_marker,
)
from swarm_engine import alone_with_the_engine_s_networks, dangling_images, remove_images

from steps import compose
from steps.servers import local, local_files

skip_module_without_docker_engine()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project; its Compose projects and local state removed after."""
    with alone_with_the_engine_s_networks(tmp_path_factory):
        root = make_copy(tmp_path_factory.mktemp(f"compose{os.getpid()}-"))
        yield root
        for label in project_labels(compose_prefix(root)):
            remove_everything_of(label)
        shutil.rmtree(local_files.state_root(root), ignore_errors=True)


def compose_prefix(root) -> str:
    """The Compose project names of the copy start with this (its folder's name and hash)."""
    return compose.project_name(root.resolve())


def project_labels(prefix: str) -> set[str]:
    """Compose project names starting with `prefix` that still own a container, network or volume."""
    found = set()
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        listing = subprocess.run(
            ["docker", *kind, "--format", '{{.Label "com.docker.compose.project"}}'],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found |= {name for name in listing.split() if name.startswith(prefix)}
    return found


def remove_everything_of(project_name: str) -> None:
    label = f"label=com.docker.compose.project={project_name}"
    for kind, remove in ((["ps", "-aq"], ["rm", "-fv"]), (["network", "ls", "-q"], ["network", "rm"]), (["volume", "ls", "-q"], ["volume", "rm", "-f"])):  # fmt: skip
        ids = subprocess.run(
            ["docker", *kind, "--filter", label], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["docker", *remove, *ids], capture_output=True)


def inv(project, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_inv(project, "compose", *args, **env)


@pytest.fixture
def leaves_no_test_project(project):
    """Asserts that `inv test` runs left no container, network or volume of a throwaway project."""
    yield
    assert project_labels(f"{compose_prefix(project)}-testing-") == set()


@pytest.fixture
def ports():
    """Free host ports for the copy's development db and web, so the developer's are not touched."""
    return {"POSTGRES_PORT": str(free_port()), "WEB_PORT": str(free_port())}


# --------------------------------------------------------------------------- the compose files


@pytest.mark.parametrize("env", ["development", "testing", "production"])
def test_compose_config_is_clean_for_every_environment(project, env):
    result = inv(project, "compose", "--", "config", "--quiet", APPLICATION_CONFIG=env, SECRET_KEY="d41d8cd98f00b204e9800998ecf8427e", POSTGRES_PASSWORD="pw")  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_production_refuses_to_start_without_its_secrets(project):
    environ = {
        k: v
        for k, v in clean_environ("compose", WEB_IMAGE="refuse-web:latest").items()
        if k not in ("SECRET_KEY", "POSTGRES_PASSWORD")
    }
    result = subprocess.run(
        ["docker", "compose", "-p", "refuse", "-f", "compose/production.yml", "up", "--no-start"],
        cwd=project, env=environ, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD" in result.stderr or "set SECRET_KEY" in result.stderr
    assert project_labels("refuse") == set()


def test_the_db_tasks_leave_the_production_stack_s_database_to_it(project):
    """Its `db` publishes no port: a task that would start it says where it is, and starts none."""
    result = inv(project, "db.upgrade", **PRODUCTION)
    assert result.returncode == 1
    assert "the production database on Compose is its stack's" in result.stderr
    assert project_labels(f"{compose_prefix(project)}-production") == set()


# --------------------------------------------------------------------------- inv test on compose


def test_a_green_run_on_compose(project, leaves_no_test_project):
    result = inv(project, "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "throwaway testing PostgreSQL (compose" in result.stderr


def test_a_red_run_on_compose_fails_and_cleans_up(project, leaves_no_test_project):
    result = inv(project, "test", SAMPLE_FAIL="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout


def test_an_interrupted_run_on_compose_removes_its_project(
    project, tmp_path, leaves_no_test_project
):
    marker = tmp_path / "started"
    run = start_inv(project, "compose", "test", SAMPLE_MARKER=str(marker))
    wait_for_marker(marker, run)
    assert project_labels(f"{compose_prefix(project)}-testing-"), "its db should be running now"
    run.send_signal(signal.SIGINT)
    output = run.communicate(timeout=TIMEOUT)[0]
    assert run.returncode == 130, output


def test_a_warm_compose_test_server_is_used_and_left_running(project, leaves_no_test_project):
    """`APPLICATION_CONFIG=testing inv db.up`, then `inv test` uses that server and leaves it up."""
    assert inv(project, "db.up", APPLICATION_CONFIG="testing").returncode == 0
    try:
        result = inv(project, "test")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warm testing PostgreSQL server" in result.stderr
        status = inv(project, "db.status", APPLICATION_CONFIG="testing").stdout
        assert "running on" in status
        assert "data on tmpfs, gone when it stops" in status
    finally:
        down = inv(project, "db.down", APPLICATION_CONFIG="testing")
        assert down.returncode == 0
        assert "its data is gone with it" in down.stderr
    assert project_labels(f"{compose_prefix(project)}-testing") == set()


def test_auto_says_it_chose_compose(project):
    result = inv(project, "db.status", DB_SERVER="auto")
    assert "compose, chosen by DB_SERVER=auto: a Docker engine answered" in result.stdout


def test_the_logs_of_a_stopped_environment_say_it_is_stopped(project):
    result = inv(project, "compose", "--", "logs", APPLICATION_CONFIG="testing")
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    assert "is stopped (no containers): no logs to show" in result.stderr


# --------------------------------------------------------------------------- the development db


def test_development_data_survives_down_and_up(project, ports):
    try:
        assert inv(project, "db.init", **ports).returncode == 0
        # Its volume's password is its own, random, in a file only this user reads.
        saved = local.password_file("development.compose", project)
        assert saved.stat().st_mode & 0o777 == 0o600
        dsn = f"host=127.0.0.1 port={ports['POSTGRES_PORT']} user=postgres dbname=application"
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(f"{dsn} password=postgres")  # the committed one: any user's
        dsn += f" password={saved.read_text().strip()}"
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (email, email_folded) VALUES ('kept@example.com', 'kept@example.com')"
            )
        connection.close()
        assert "stopped" in inv(project, "db.down", **ports).stderr
        assert inv(project, "db.up", **ports).returncode == 0
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT email FROM users")
            assert cursor.fetchall() == [("kept@example.com",)]
        connection.close()

        logs = inv(project, "compose", "--", "logs", "db", **ports)
        assert "database system is ready to accept connections" in logs.stdout

        quoted = inv(project, "compose", "--", "exec", "db", "psql", "-U", "postgres", "-tA", "-c", "select 'two words'", **ports)  # fmt: skip
        assert quoted.stdout.strip() == "two words", quoted.stderr
    finally:
        inv(project, "compose", "--", "down", "--volumes", **ports)


def test_the_development_stack_creates_its_database_and_serves_the_api(project, ports, web_image):
    """From nothing (no volume, no database): `inv compose -- up --build` serves the API."""
    env = {**ports, "WEB_IMAGE": web_image("dev")}
    try:
        up = inv(project, "compose", "--", "up", "--detach", "--build", **env)
        assert up.returncode == 0, up.stderr
        url = f"http://127.0.0.1:{ports['WEB_PORT']}"
        assert_the_api_works(url, "dev@example.com")
        uid = inv(project, "compose", "--", "exec", "web", "id", "-u", **env)
        assert uid.stdout.strip() == str(os.getuid())
        logs = inv(project, "compose", "--", "logs", "web", **env).stdout
        assert "prepare-database: created database application" in logs

        # The README's foreground `up ... web`: Ctrl-C stops web, never the db inv dev uses.
        assert inv(project, "compose", "--", "stop", "web", **env).returncode == 0
        run = start_inv(project, "compose", "compose", "--", "up", "web", **env)
        assert fetch_when_up(f"{url}/health", lambda: run.poll() is None) is not None
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=TIMEOUT)
        with pytest.raises(OSError):  # web has stopped
            urllib.request.urlopen(f"{url}/health", timeout=2)
        status = inv(project, "db.status", **env).stdout
        assert f"running on 127.0.0.1:{ports['POSTGRES_PORT']}" in status
    finally:
        inv(project, "compose", "--", "down", "--volumes", **env)


@pytest.fixture
def renamed_shop(project):
    """The copy renamed `shop` in its pyproject.toml, as a new project starts."""
    settings = project / "pyproject.toml"
    original = settings.read_text()
    settings.write_text(original.replace('name = "flask-invoke"', 'name = "shop"', 1))
    prefix = compose_prefix(project)
    dangling = set(dangling_images())
    yield prefix
    remove_images(f"{prefix}-web", prefix)
    settings.write_text(original)
    assert set(dangling_images()) <= dangling


def test_the_production_stack_serves_the_api_and_keeps_its_data(project, ports, renamed_shop):
    """From nothing: real API calls through the proxy; down and up: the data kept."""
    env = {**ports, **PRODUCTION}
    url = f"http://127.0.0.1:{ports['WEB_PORT']}"
    try:
        up = inv(project, "compose", "--", "up", "--detach", "--build", "--wait", **env)
        assert up.returncode == 0, up.stderr
        assert renamed_shop.startswith("shop-")
        assert project_labels(f"{renamed_shop}-production") == {f"{renamed_shop}-production"}
        assert docker_image_exists(f"{renamed_shop}-web:latest")
        assert image_files(f"{renamed_shop}-web:latest") == IMAGE_FILES
        assert (
            json.load(urllib.request.urlopen(f"{url}/openapi.json", timeout=5))["info"]["title"]
            == "shop"
        )
        created = assert_the_api_works(url, "prod@example.com")
        # The published port is the proxy's; gunicorn behind it served the request.
        server = urllib.request.urlopen(f"{url}/health", timeout=5).headers.get("Server", "")
        assert server == "nginx"
        status = inv(project, "db.status", **env)
        assert (
            f"running in the Compose project {compose_prefix(project)}-production" in status.stdout
        )
        shell = subprocess.run(
            [*INV, "db.shell"], input="SELECT email FROM users;\n", cwd=project,
            env=clean_environ("compose", **env), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert "prod@example.com" in shell.stdout, shell.stderr
        # From a production incident to a local reproduction: two commands.
        dump = project / "incident.dump"
        dumped = inv(project, "db.dump", "--file", str(dump), **env)
        assert dumped.returncode == 0, dumped.stderr
        assert "in the Compose project" in dumped.stderr and dump.stat().st_mode & 0o077 == 0
        loaded = run_inv(project, "local", "db.load", str(dump), "--yes")
        assert loaded.returncode == 0, loaded.stderr
        local_shell = subprocess.run(
            [*INV, "db.shell"], input="SELECT email FROM users;\n", cwd=project,
            env=clean_environ("local"), capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        assert "prod@example.com" in local_shell.stdout, local_shell.stderr
        run_inv(project, "local", "db.down")

        assert inv(project, "compose", "--", "down", **env).returncode == 0
        up = inv(project, "compose", "--", "up", "--detach", "--wait", **env)
        assert up.returncode == 0, up.stderr
        assert call(url, "GET", f"/users/{created['id']}") == (200, created)
        logs = inv(project, "compose", "--", "logs", "web", **env).stdout
        assert f'"GET /users/{created["id"]} HTTP/1.0" 200' in logs  # gunicorn's access log
        assert logs.count("Running upgrade  -> 0001") == 0  # the logs are of the new container
        assert "prepare-database: database application on db:5432 is at head" in logs
    finally:
        # Reading logs and tearing down need no secret.
        no_secrets = {k: v for k, v in env.items() if k not in ("SECRET_KEY", "POSTGRES_PASSWORD")}
        logs = inv(project, "compose", "--", "logs", "web", **no_secrets)
        down = inv(project, "compose", "--", "down", "--volumes", **no_secrets)
    assert (logs.returncode, down.returncode) == (0, 0), logs.stderr + down.stderr
    assert "is at head" in logs.stdout
    assert project_labels(f"{renamed_shop}-production") == set()


def test_production_web_replicas_migrate_once_and_a_failed_migration_never_serves(
    project, ports, web_image
):
    """Three web containers at once: one migrates; a broken migration: none serves."""
    env = {**ports, **PRODUCTION, "WEB_IMAGE": web_image("latest")}
    versions = project / "migrations" / "versions"
    head = max(path.name[:4] for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    broken = versions / "0099_broken.py"
    try:
        up = inv(project, "compose", "--", "up", "--detach", "--build", "--wait", "--scale", "web=3", **env)  # fmt: skip
        assert up.returncode == 0, up.stderr
        logs = inv(project, "compose", "--", "logs", "web", **env).stdout
        assert logs.count("Running upgrade  -> 0001") == 1, logs
        assert logs.count("is at head") == 3, logs

        broken.write_text(BROKEN_MIGRATION.replace("HEAD", head))
        inv(project, "compose", "--", "up", "--detach", "--build", "--scale", "web=1", **env)  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while "not serving" not in (logs := inv(project, "compose", "--", "logs", "web", **env).stdout):  # fmt: skip
            assert time.monotonic() < deadline, logs
            time.sleep(1)
        assert "prepare-database: the migration failed:" in logs
        assert "Listening at" not in logs
        state = inv(project, "compose", "--", "ps", "--all", "--format", "{{.State}} {{.Health}}", "web", **env)  # fmt: skip
        assert "healthy" not in state.stdout.replace("unhealthy", ""), state.stdout
        # Rolled back as one transaction: the schema as it was.
        assert psql(project, env, "SELECT version_num FROM alembic_version") == head
        assert psql(project, env, "SELECT to_regclass('half_made')") == ""
    finally:
        broken.unlink(missing_ok=True)
        inv(project, "compose", "--", "down", "--volumes", **env)


PRODUCTION = {
    "APPLICATION_CONFIG": "production",
    "SECRET_KEY": "d41d8cd98f00b204e9800998ecf8427e",
    "POSTGRES_PASSWORD": "pw",
}

BROKEN_MIGRATION = """
from alembic import op
import sqlalchemy as sa

revision = "0099"
down_revision = "HEAD"


def upgrade():
    op.create_table("half_made", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT no_such_function()")


def downgrade():
    op.drop_table("half_made")
"""


@pytest.fixture
def web_image(project):
    """An image name of the copy's own, removed after the test with its leftovers."""
    repository = f"{compose_prefix(project)}-web"
    dangling = set(dangling_images())
    yield lambda tag: f"{repository}:{tag}"
    remove_images(repository, compose_prefix(project))
    assert set(dangling_images()) <= dangling


# The app and what runs it; no tasks, tests, tools or personal env files (.dockerignore).
IMAGE_FILES = {
    "app/", "migrations/", "env/development.env", "env/testing.env", "env/production.env",
    "compose/entrypoint.sh", "wsgi.py", "gunicorn.conf.py", "pyproject.toml",
    "requirements.txt", "requirements/production.txt",
}  # fmt: skip


def image_files(image: str) -> set[str]:
    """/app's files in `image`, a folder of Python code as `app/` or `migrations/`."""
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "find", image, ".", "-type", "f"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {
        f"{path.split('/')[1]}/" if path.split("/")[1] in ("app", "migrations") else path[2:]
        for path in listing
    }


def docker_image_exists(image: str) -> bool:
    inspect = ["docker", "image", "inspect", image]
    return subprocess.run(inspect, capture_output=True).returncode == 0


def call(url: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def assert_the_api_works(url: str, email: str) -> dict:
    """POST -> 201, GET the same row -> 200, /health -> 200, as a client would; the user made."""
    assert fetch_when_up(f"{url}/health") is not None
    status, created = call(url, "POST", "/users", {"email": email})
    assert (status, created["email"]) == (201, email)
    assert call(url, "GET", f"/users/{created['id']}") == (200, created)
    assert call(url, "GET", "/health") == (200, {"status": "ok", "database": "ok"})
    return created


def psql(project, env, query: str) -> str:
    """`query` on the stack's application database, by psql inside the db container."""
    result = inv(project, "compose", "--", "exec", "db", "psql", "-U", "postgres", "-d", "application", "-tAc", query, **env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_throwaway_project_whose_inv_was_killed_is_removed_by_the_next_run(project):
    """SIGKILL leaves no chance to clean up: the next `inv test` removes what is left."""
    dead_pid = 2**22 + 1  # above the largest pid Linux hands out
    abandoned = f"{compose_prefix(project)}-testing-{dead_pid}-dead"
    subprocess.run(
        ["docker", "create", "--label", f"com.docker.compose.project={abandoned}", "postgres:18"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert project_labels(abandoned) == {abandoned}
    assert inv(project, "test", "--pattern", "passing").returncode == 0
    assert project_labels(abandoned) == set()
