"""What an attacker on the same machine, or a careless user, would try: done for real."""

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest
from project_copy import (
    TIMEOUT,
    dev_password,
    fetch_when_up,
    free_port,
    local_inv,
    local_socket,
    module_copy,
    start_inv,
)

from steps.servers import local

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the attacker here is the server's account: needs root"
)


project = module_copy("hardening")
inv = local_inv


@pytest.fixture
def bystander():
    """A process of the test's own user that nobody should signal: `sleep`."""
    process = subprocess.Popen(["sleep", "300"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_stale_postmaster_pid_naming_another_process_is_neither_signalled_nor_in_the_way(
    project, bystander
):
    port = str(free_port())
    assert inv(project, "db.up", POSTGRES_PORT=port).returncode == 0
    assert inv(project, "db.down").returncode == 0
    data = local.cluster_home("development", project) / "data"
    # What a crashed server leaves when its PID has since gone to another process.
    (data / "postmaster.pid").write_text(f"{bystander.pid}\n{data}\n1700000000\n{port}\n\n\n")

    down = inv(project, "db.down")
    assert "not running" in down.stderr
    assert bystander.poll() is None, "db.down signalled a process that is not our server"

    up = inv(project, "db.up", POSTGRES_PORT=port)
    assert up.returncode == 0, up.stderr
    assert bystander.poll() is None
    assert inv(project, "db.down").returncode == 0


def test_a_killed_development_server_is_restarted_with_its_data(project):
    port = str(free_port())
    web_port = str(free_port())
    run = start_inv(project, "local", "dev", POSTGRES_PORT=port, FLASK_RUN_PORT=web_port)
    try:
        assert fetch_when_up(f"http://127.0.0.1:{web_port}/", lambda: run.poll() is None)
        dsn = f"host={local_socket(project)} port={port} user=postgres password={dev_password(project)} dbname=application"
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users (email, email_folded) VALUES ('survivor@example.com', 'survivor@example.com')"
            )
        connection.close()
        pid_file = local.cluster_home("development", project) / "data" / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGKILL)  # it stays a zombie of `inv dev`, which never waits for it
        up = inv(project, "db.up", POSTGRES_PORT=port)
        assert up.returncode == 0, up.stderr
        assert "started the development PostgreSQL server" in up.stderr
        dsn = dsn.replace(dsn.split()[0], f"host={local_socket(project)}")  # a new socket folder
        with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT email FROM users")
            assert cursor.fetchall() == [("survivor@example.com",)]
        connection.close()
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=TIMEOUT)
        inv(project, "db.down")


@as_root
def test_a_forged_throwaway_folder_cannot_make_root_signal_a_process(project, bystander):
    account = local.server_account()
    forged = Path(tempfile.mkdtemp(prefix="pglocal-test-", dir=local.scratch_root()))
    (forged / "data").mkdir()
    (forged / "owner").write_text(f"{dead_pid()}\n/elsewhere\n")
    (forged / "data" / "postmaster.pid").write_text(f"{bystander.pid}\n{forged}/data\n0\n5432\n")
    for path in (forged, forged / "data", forged / "owner", forged / "data" / "postmaster.pid"):
        os.chown(path, account.pw_uid, account.pw_gid)
    try:
        result = inv(project, "test")
        assert result.returncode == 0, result.stdout + result.stderr
        assert bystander.poll() is None, "inv test signalled the PID a forged postmaster.pid named"
    finally:
        shutil.rmtree(forged, ignore_errors=True)


@as_root
def test_root_does_not_write_through_a_symlink_the_server_account_planted(project, tmp_path):
    assert inv(project, "db.up", POSTGRES_PORT=str(free_port())).returncode == 0
    assert inv(project, "db.down").returncode == 0
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    log = local.cluster_home("development", project) / "server.log"
    log.unlink()
    log.symlink_to(victim)
    with contextlib.suppress(OSError):
        os.lchown(log, local.server_account().pw_uid, local.server_account().pw_gid)
    try:
        result = inv(project, "db.up", POSTGRES_PORT=str(free_port()))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "server log" in result.stderr, result.stderr
        assert victim.read_text() == "root's file\n"
    finally:
        log.unlink()
        inv(project, "db.down")


@pytest.fixture
def intruder():
    """Another Unix user on this machine, made for the test and deleted after it."""
    name = f"intruder{os.getpid()}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", name], check=True
    )
    yield pwd.getpwnam(name)
    subprocess.run(["userdel", name], check=False)


@as_root
def test_another_local_user_cannot_log_in_to_a_server_inv_started(project, intruder):
    """They try the committed password, and reading the file that holds the real one."""
    port = str(free_port())
    assert inv(project, "db.up", POSTGRES_PORT=port).returncode == 0
    try:
        status = inv(project, "db.status").stdout
        password_file = re.search(r"password in (\S+)", status).group(1)
        account = local.server_account()
        psql = local.reachable_binaries(local.find_server_binaries(), account) / "psql"
        as_intruder = {
            "user": intruder.pw_uid,
            "group": intruder.pw_gid,
            "extra_groups": [],
            "cwd": "/",
        }
        socket = local_socket(project)

        def attempt(host: str) -> subprocess.CompletedProcess:
            command = [psql, "-h", host, "-p", port, "-U", "postgres", "-d", "postgres"]
            return subprocess.run(
                [*command, "-c", "COPY (SELECT 1) TO PROGRAM 'id'"],
                env={"PGPASSWORD": "postgres", "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                **as_intruder,
            )

        attempts = {host: attempt(host) for host in ("127.0.0.1", socket)}
        # No TCP port to try; the socket's folder is not theirs to enter.
        assert "Connection refused" in attempts["127.0.0.1"].stderr, attempts["127.0.0.1"].stderr
        assert "Permission denied" in attempts[socket].stderr, attempts[socket].stderr
        peek = subprocess.run(["cat", password_file], capture_output=True, text=True, **as_intruder)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
        # The developer (and the app, which inv hands it to) gets in with it.
        mine = subprocess.run(
            [psql, "-h", socket, "-p", port, "-U", "postgres", "-d", "postgres", "-tAc", "SELECT 1"],
            env={"PGPASSWORD": Path(password_file).read_text().strip()}, capture_output=True, text=True,
        )  # fmt: skip
        assert mine.stdout.strip() == "1", mine.stderr
    finally:
        inv(project, "db.down")


@as_root
def test_a_full_disk_under_the_development_server_is_named_as_such(project, tmp_path):
    """The cluster's folder on a small tmpfs, filled up: what a full disk does to a server."""
    assert inv(project, "db.up", POSTGRES_PORT=str(free_port())).returncode == 0
    assert inv(project, "db.down").returncode == 0
    home = local.cluster_home("development", project)
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", home, backup], check=True)
    size = sum(f.stat().st_size for f in backup.rglob("*") if f.is_file()) + 4 * 1024 * 1024
    owner = home.stat()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},uid={owner.st_uid},gid={owner.st_gid},mode=0700", "tmpfs", home],
        check=True,
    )  # fmt: skip
    try:
        subprocess.run(["cp", "-a", f"{backup}/.", home], check=True)
        with contextlib.suppress(OSError), (home / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
        result = inv(project, "db.up", POSTGRES_PORT=str(free_port()))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1, result.stderr
        assert "No space left on device" in result.stderr
    finally:
        inv(project, "db.down")
        subprocess.run(["umount", home], check=False)


@as_root
def test_a_first_db_up_on_a_full_disk_leaves_no_half_made_cluster(project):
    home = local.cluster_home("testing", project)
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", home], check=True)
    try:
        full = inv(project, "db.up", APPLICATION_CONFIG="testing")
        leftovers = sorted(path.name for path in home.iterdir())
    finally:
        subprocess.run(["umount", home], check=False)
    assert full.returncode == 1
    assert full.stderr.count("\n") == 1, full.stderr
    assert "No space left on device" in full.stderr
    assert "data" not in leftovers and "data.partial" not in leftovers, leftovers
    try:  # room again: the next db.up makes the cluster
        assert inv(project, "db.up", APPLICATION_CONFIG="testing").returncode == 0
    finally:
        inv(project, "db.down", APPLICATION_CONFIG="testing")


def test_a_database_url_in_the_shell_does_not_redirect_the_tests(project):
    """A careless shell: DATABASE_URL still names a database that matters when `inv test` runs."""
    port = str(free_port())
    assert inv(project, "db.up", POSTGRES_PORT=port).returncode == 0
    password, socket = dev_password(project), local_socket(project)
    admin = psycopg2.connect(
        f"host={socket} port={port} user=postgres password={password} dbname=postgres"
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS precious")
            cursor.execute("CREATE DATABASE precious")
        precious = f"host={socket} port={port} user=postgres password={password} dbname=precious"
        with psycopg2.connect(precious) as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)")
        connection.close()

        url = f"postgresql://postgres:{password}@/precious?host={socket}&port={port}"
        result = inv(project, "test", DATABASE_URL=url)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "DATABASE_URL is ignored by the testing environment" in result.stderr
        with psycopg2.connect(precious) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            assert cursor.fetchall() == [("orders",)]  # no users, no alembic_version
            cursor.execute("SELECT id FROM orders")
            assert cursor.fetchall() == [(42,)]
        connection.close()
    finally:
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS precious WITH (FORCE)")
        admin.close()
        inv(project, "db.down")
