"""Snapshots of an environment's database: template databases on its server where the server
lets us make databases, else pg_dump files in .snapshots/<env>/ (a managed server, say)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

from steps import PROJECT
from steps.commands import confirm, fail
from steps.environment import Env

NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,23}")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        fail(f"snapshot name {name!r}: use lowercase letters, digits and _ (at most 24)")
    return name


def on_server(cursor) -> bool:
    """Whether the server lets us make databases: snapshots are then templates on it."""
    cursor.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
    return bool(cursor.fetchone()[0])


def database_of(env: Env, name: str) -> str:
    return f"{env['APPLICATION_DB']}_snapshot_{name}"


def file_of(env: Env, name: str) -> Path:
    return PROJECT / ".snapshots" / env.name / f"{name}.dump"


def exists(cursor, database: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    return cursor.fetchone() is not None


def listing(cursor, env: Env) -> list[tuple[str, int, str | None, float | None]]:
    """(name, size in bytes, migration, when taken) of the environment's snapshots."""
    found = []
    prefix = database_of(env, "")
    cursor.execute(
        "SELECT datname, pg_database_size(oid), shobj_description(oid, 'pg_database') "
        "FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname",
        (prefix,),
    )
    for database, size, comment in cursor.fetchall():
        about = json.loads(comment or "{}")
        found.append((database.removeprefix(prefix), size, about.get("head"), about.get("taken")))
    for path in sorted(file_of(env, "x").parent.glob("*.dump")):
        about = json.loads(path.with_suffix(".json").read_text() or "{}")
        found.append((path.stem, path.stat().st_size, about.get("head"), about.get("taken")))
    return found


def about(cursor, env: Env, name: str) -> tuple[str | None, float | None] | None:
    """(migration, when taken) of snapshot `name`, None when there is none."""
    return next(((h, t) for n, _, h, t in listing(cursor, env) if n == name), None)


def end_connections(cursor, database: str, yes: bool, production: bool) -> None:
    """Name the connections open on `database` (a running inv dev's, say); end them on a yes."""
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    cursor.execute(f"SELECT pid, application_name {others}", (database,))
    found = cursor.fetchall()
    if found:
        named = ", ".join(f"pid {pid}" + (f" ({app})" if app else "") for pid, app in found)
        confirm(f"{database} is in use by {named}: end these connections?", yes, production)
        cursor.execute(f"SELECT pg_terminate_backend(pid, 5000) {others}", (database,))


def copy_database(cursor, target: str, source: str) -> None:
    from psycopg2 import errors, sql

    try:
        cursor.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(target), sql.Identifier(source)
            )
        )
    except errors.ObjectInUse:
        fail(f"{source} is in use again (the app reconnected?): stop it, then try again")


def take(cursor, env: Env, name: str, head: str | None, yes: bool) -> None:
    """Copy APPLICATION_DB into a template nobody can connect to, its migration in its comment."""
    from psycopg2 import sql

    snapshot = database_of(env, name)
    end_connections(cursor, env["APPLICATION_DB"], yes, env.production)
    copy_database(cursor, snapshot, env["APPLICATION_DB"])
    identifier = sql.Identifier(snapshot)
    options = "IS_TEMPLATE true ALLOW_CONNECTIONS false"
    cursor.execute(sql.SQL("ALTER DATABASE {} WITH " + options).format(identifier))
    comment = json.dumps({"head": head, "taken": time.time()})
    cursor.execute(sql.SQL("COMMENT ON DATABASE {} IS %s").format(identifier), (comment,))


def restore(cursor, env: Env, name: str, yes: bool) -> None:
    """Build the snapshot's copy under a temporary name, then swap it in: a failure changes nothing."""
    from psycopg2 import sql

    database = env["APPLICATION_DB"]
    building, replaced = f"{database}_restoring", f"{database}_replaced"
    drop(cursor, building)
    drop(cursor, replaced)  # left by a restore killed before its end
    copy_database(cursor, building, database_of(env, name))
    try:
        if there := exists(cursor, database):
            end_connections(cursor, database, yes, env.production)
        cursor.execute("BEGIN")  # both renames or neither
        if there:
            cursor.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(database), sql.Identifier(replaced)
                )
            )
        cursor.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(building), sql.Identifier(database)
            )
        )
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        drop(cursor, building)
        raise
    drop(cursor, replaced)


def drop(cursor, database: str) -> None:
    """Drop `database` if it exists, template or not, ending its connections."""
    from psycopg2 import sql

    if exists(cursor, database):
        identifier = sql.Identifier(database)
        cursor.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(identifier))
        cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(identifier))


def dump_to(client: list[str], path: Path) -> None:
    """pg_dump's custom format into `path` (written beside it, then renamed: all or nothing)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    # Readable by its owner only: a database's rows, the production one's too.
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as output:
        done = subprocess.run([*client, "--format=custom"], stdout=output, stderr=subprocess.PIPE)
    if done.returncode != 0:
        partial.unlink()
        fail(f"pg_dump failed: {last_line(done.stderr)}")
    partial.rename(path)


def take_file(client: list[str], env: Env, name: str, head: str | None) -> Path:
    """The snapshot as a pg_dump file, its migration and time beside it."""
    path = file_of(env, name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    dump_to(client, path)
    path.with_suffix(".json").write_text(json.dumps({"head": head, "taken": time.time()}))
    return path


def load_from(client: list[str], path: Path) -> None:
    """pg_restore of `path` in one transaction: a failure leaves the database as it was."""
    restore = [*client, "--clean", "--if-exists", "--no-owner", "--single-transaction"]
    with path.open("rb") as source:
        done = subprocess.run(restore, stdin=source, stderr=subprocess.PIPE)
    if done.returncode != 0:
        fail(f"pg_restore failed, the database is as it was: {last_line(done.stderr)}")


def last_line(output: bytes) -> str:
    lines = output.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def age(taken: float | None) -> str:
    if taken is None:
        return "?"
    seconds = max(0, time.time() - taken)
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f} {unit}"
    return f"{seconds:.0f} s"
