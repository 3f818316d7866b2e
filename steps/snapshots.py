"""Snapshots of an environment's database: template databases on its server where the server
lets us make databases, else pg_dump files in .snapshots/<env>/ (a managed server, say)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from steps import PROJECT
from steps.commands import confirm, fail, signals_held, sigterm_unwinds
from steps.environment import Env
from steps.postgres import applied_revision, tables_with_rows
from steps.servers import app_database_client, task_for
from steps.templates import drop

NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,23}")


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        fail(f"snapshot name {name!r}: use lowercase letters, digits and _ (at most 24)")


class Snapshots:
    """The snapshots of an environment's database on its server at host:port."""

    def __init__(self, env: Env, host: str, port: int, cursor) -> None:
        self.env, self.host, self.port, self.cursor = env, host, port, cursor
        self.database = env["APPLICATION_DB"]

    def database_of(self, name: str) -> str:
        return f"{self.database}_snapshot_{name}"

    def file_of(self, name: str) -> Path:
        return PROJECT / ".snapshots" / self.env.name / f"{name}.dump"

    def listing(self) -> list[tuple[str, int, str | None, float | None]]:
        """(name, size in bytes, migration, when taken) of each snapshot."""
        prefix, found = self.database_of(""), []
        self.cursor.execute(
            "SELECT datname, pg_database_size(oid), shobj_description(oid, 'pg_database') "
            "FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname",
            (prefix,),
        )
        for database, size, comment in self.cursor.fetchall():
            about = json.loads(comment or "{}")
            found.append(
                (database.removeprefix(prefix), size, about.get("head"), about.get("taken"))
            )
        for path in sorted(self.file_of("x").parent.glob("*.dump")):
            about = json.loads(path.with_suffix(".json").read_text() or "{}")
            found.append((path.stem, path.stat().st_size, about.get("head"), about.get("taken")))
        return found

    def about(self, name: str) -> tuple[str | None, float | None]:
        """(migration, when taken) of snapshot `name`; one line if there is none."""
        found = next(((h, t) for n, _, h, t in self.listing() if n == name), None)
        if found is None:
            fail(f"no snapshot {name}: `{task_for(self.env, 'db.snapshots')}` lists them")
        return found

    def take(self, name: str, yes: bool) -> str:
        """Snapshot the database as `name`: on the server if it lets us, else into a file."""
        from psycopg2 import sql

        if any(found == name for found, *_ in self.listing()):
            fail(f"snapshot {name} exists: take another name, or remove it (`--rm`)")
        if not exists(self.cursor, self.database):
            fail(f"no database {self.database} to snapshot: `{task_for(self.env, 'db.init')}`")
        head = applied_revision(self.env, self.host, self.port)
        about = json.dumps({"head": head, "taken": time.time()})
        taken = f"snapshot {name} of {self.database} (at {head})"
        if not self.on_server():
            path = self.file_of(name)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            dump_to(app_database_client(self.env, self.port, "pg_dump"), path)
            path.with_suffix(".json").write_text(about)
            where = path.relative_to(PROJECT)
            return f"{taken}: the server makes no databases for this user: a pg_dump file, {where}"
        snapshot = sql.Identifier(self.database_of(name))
        try:  # a whole snapshot or none, Ctrl-C included
            with self.closed(self.database, yes):
                copy_database(self.cursor, self.database_of(name), self.database)
            options = "IS_TEMPLATE true ALLOW_CONNECTIONS false"  # nobody changes it
            self.cursor.execute(sql.SQL("ALTER DATABASE {} WITH " + options).format(snapshot))
            self.cursor.execute(sql.SQL("COMMENT ON DATABASE {} IS %s").format(snapshot), (about,))
        except BaseException:
            with signals_held():
                drop(self.cursor, self.database_of(name))
            raise
        return f"{taken}: a template database on its server"

    def restore(self, name: str, yes: bool) -> list[str]:
        """Put snapshot `name` in the database's place, after a yes; what to tell."""
        head, taken = self.about(name)
        now, was = "missing", head
        if exists(self.cursor, self.database):
            rows = tables_with_rows(self.env, self.host, self.port)
            was = applied_revision(self.env, self.host, self.port)
            now = f"at {was}, " + (f"rows in {', '.join(rows)}" if rows else "no rows")
        question = (
            f"replace the {self.env.name} database {self.database} ({now}) with snapshot {name} "
            f"(at {head}, {age(taken)} old)?"
        )
        confirm(question, yes, self.env.production)
        if exists(self.cursor, self.database_of(name)):
            self.swap_in(name, yes)
        else:
            load_from(app_database_client(self.env, self.port, "pg_restore"), self.file_of(name))
        told = [
            f"the {self.env.name} database {self.database} is snapshot {name} again (at {head})"
        ]
        if head != was:
            upgrade = task_for(self.env, "db.upgrade")
            told.append(
                f"the snapshot is at {head}, the database was at {was}: `{upgrade}` if need be"
            )
        return told

    def swap_in(self, name: str, yes: bool) -> None:
        """The snapshot's copy built under a temporary name, then renamed in: all or nothing."""
        from psycopg2 import errors, sql

        building, replaced = f"{self.database}_restoring", f"{self.database}_replaced"
        drop(self.cursor, building)
        drop(self.cursor, replaced)  # left by a restore killed before its end
        rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
        try:
            copy_database(self.cursor, building, self.database_of(name))
            there = exists(self.cursor, self.database)
            renames = [(self.database, replaced)] if there else []
            closed = self.closed(self.database, yes) if there else contextlib.nullcontext()
            with closed, signals_held():  # both renames or neither; once done, the restore is
                self.cursor.execute("BEGIN")
                try:
                    for old, new in [*renames, (building, self.database)]:
                        self.cursor.execute(rename.format(*map(sql.Identifier, (old, new))))
                    self.cursor.execute("COMMIT")
                except BaseException as error:
                    self.cursor.execute("ROLLBACK")
                    if isinstance(error, errors.ObjectInUse):
                        fail(f"{self.database} is in use again: stop what uses it, then try again")
                    raise
        except BaseException:
            with signals_held():
                drop(self.cursor, building)
            raise
        with signals_held():
            drop(self.cursor, replaced)

    def remove(self, name: str) -> str:
        self.about(name)
        drop(self.cursor, self.database_of(name))
        self.file_of(name).unlink(missing_ok=True)
        self.file_of(name).with_suffix(".json").unlink(missing_ok=True)
        return f"removed snapshot {name}"

    def on_server(self) -> bool:
        """Whether the server lets us make databases: snapshots are then templates on it."""
        self.cursor.execute(
            "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        return bool(self.cursor.fetchone()[0])

    @contextlib.contextmanager
    def closed(self, database: str, yes: bool) -> Iterator[None]:
        """Nobody on `database` in this block: the connections open on it (a running inv dev's)
        named and ended on a yes, and new ones refused until the block ends."""
        from psycopg2 import sql

        others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        deadline = time.monotonic() + 1  # a command that just ended: its backend is exiting
        while True:
            self.cursor.execute(f"SELECT pid, application_name {others}", (database,))
            found = self.cursor.fetchall()
            if not found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if found:
            named = ", ".join(f"pid {pid}" + (f" ({app})" if app else "") for pid, app in found)
            confirm(
                f"{database} is in use by {named}: end these connections?", yes, self.env.production
            )
        allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
        self.cursor.execute(allow.format(sql.Identifier(database), sql.SQL("false")))
        try:  # an app that reconnects gets a refusal, not the database
            self.cursor.execute(f"SELECT pg_terminate_backend(pid, 5000) {others}", (database,))
            yield
        finally:  # the database under that name: the one restored, or the one left as it was
            with signals_held():
                self.cursor.execute(allow.format(sql.Identifier(database), sql.SQL("true")))


def exists(cursor, database: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    return cursor.fetchone() is not None


def copy_database(cursor, target: str, source: str) -> None:
    """A copy of database `source`, file by file: a development database may be large."""
    from psycopg2 import errors, sql

    # PostgreSQL 15+ copies through the WAL by default: quicker for a small database, but every
    # page written twice, and flushed again by the checkpoint a DROP DATABASE (a restore's) forces.
    strategy = " STRATEGY FILE_COPY" if cursor.connection.server_version >= 150000 else ""
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}" + strategy)
    try:
        cursor.execute(query.format(sql.Identifier(target), sql.Identifier(source)))
    except errors.ObjectInUse:
        fail(f"{source} is in use again (the app reconnected?): stop it, then try again")


def dump_to(client: list[str], path: Path) -> None:
    """pg_dump's custom format into `path` (written beside it, then renamed: all or nothing)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    # Readable by its owner only: a database's rows, the production one's too.
    with sigterm_unwinds():
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            with os.fdopen(os.open(partial, flags, 0o600), "wb") as output:
                dump = [*client, "--format=custom"]
                done = subprocess.run(dump, stdout=output, stderr=subprocess.PIPE)
            if done.returncode != 0:
                fail(f"pg_dump failed: {last_line(done.stderr)}")
            partial.rename(path)
        finally:  # failed or interrupted: no file
            partial.unlink(missing_ok=True)


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
