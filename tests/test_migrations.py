import os
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask_migrate import Migrate, downgrade, migrate, revision, upgrade
from sqlalchemy import Column, MetaData, String, create_engine, inspect, text

from app import create_app
from app.extensions import MIGRATIONS, db, init_migrations


def test_the_models_and_the_migrations_agree(app):
    """Fails when a model changed without a migration: run `inv db.migrate -m ...`."""
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


@pytest.fixture
def scratch_database(app, monkeypatch):
    """A database of its own on the test server, dropped afterwards."""
    name = f"migrations_{os.getpid()}"
    admin = create_engine(
        app.config["SQLALCHEMY_DATABASE_URI"].set(database=os.environ["POSTGRES_DB"]),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    monkeypatch.setenv("APPLICATION_DB", name)
    yield name
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_every_migration_goes_down_and_up_again(scratch_database):
    app = create_app("testing")
    init_migrations(app)
    with app.app_context():
        upgrade()
        assert "users" in inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert "users" not in inspect(db.engine).get_table_names()
        upgrade()
        assert "users" in inspect(db.engine).get_table_names()
        db.engine.dispose()


@pytest.fixture
def migrations_copy(tmp_path):
    """A copy of migrations/ to add files to; the project's own is left alone."""
    ignore = shutil.ignore_patterns("__pycache__")
    return shutil.copytree(MIGRATIONS, tmp_path / "migrations", ignore=ignore)


@pytest.fixture
def migrating_app(scratch_database, migrations_copy):
    """The app with Flask-Migrate on the copy of migrations/, its database a scratch one."""
    app = create_app("testing")
    Migrate(app, db, directory=str(migrations_copy))
    with app.app_context():
        yield app
        db.engine.dispose()


def add_migration(directory: Path, name: str, revision: str, down_revision: str) -> None:
    """An empty migration file in `directory`'s versions."""
    (directory / "versions" / name).write_text(
        f"revision = {revision!r}\ndown_revision = {down_revision!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
    )


def script(directory: Path, revision: str):
    """The migration of `revision` as Alembic reads it from `directory`."""
    return ScriptDirectory(str(directory)).get_revision(revision)


def test_migrate_numbers_the_new_migration_after_the_committed_ones(
    migrating_app, migrations_copy, monkeypatch
):
    upgrade()
    models = MetaData()
    db.metadata.tables["users"].to_metadata(models).append_column(Column("name", String(80)))
    monkeypatch.setitem(db.metadatas, None, models)
    migrate(message="add name")
    new = script(migrations_copy, "0003")
    assert Path(new.path).name == "0003_add_name.py"
    assert (new.revision, new.down_revision) == ("0003", "0002")
    assert "add_column(sa.Column('name'" in Path(new.path).read_text()


def test_an_autogenerate_that_finds_no_change_writes_nothing(migrating_app, migrations_copy):
    """Also after an upgrade in the same process: an earlier run's hook must not stay behind."""
    upgrade()
    migrate(message="nothing")
    assert sorted(p.name for p in (migrations_copy / "versions").glob("*.py")) == [
        "0001_create_users_table.py",
        "0002_case_insensitive_unique_email.py",
    ]


def test_revision_is_numbered_too(migrating_app, migrations_copy):
    revision(message="x")
    new = script(migrations_copy, "0003")
    assert Path(new.path).name == "0003_x.py"
    assert new.down_revision == "0002"


def test_the_apps_own_hook_runs_after_the_numbering(scratch_database, migrations_copy):
    seen = []

    def own_hook(context, revision, directives):
        seen.append(directives[0].rev_id)

    app = create_app("testing")
    Migrate(app, db, directory=str(migrations_copy), process_revision_directives=own_hook)
    with app.app_context():
        revision(message="x")
        db.engine.dispose()
    assert seen == ["0003"]
    assert (migrations_copy / "versions" / "0003_x.py").exists()


def test_two_migrations_numbered_0003_stop_with_the_fix(migrating_app, migrations_copy):
    """Two branches each added a 0003 and were merged: Alembic would keep one, skip the other."""
    add_migration(migrations_copy, "0003_add_name.py", "0003", "0002")
    add_migration(migrations_copy, "0003_add_phone.py", "0003", "0002")
    config = migrating_app.extensions["migrate"].migrate.get_config(str(migrations_copy))
    with pytest.raises(CommandError) as error:
        command.upgrade(config, "head")
    assert str(error.value) == (
        "migrations/versions/0003_add_name.py and 0003_add_phone.py both claim revision 0003:"
        " renumber one as the newest migration, e.g. rename 0003_add_phone.py to"
        ' 0004_add_phone.py and set in it revision = "0004" and down_revision = "0003"'
    )


def test_a_renumbered_migration_still_following_0002_stops_with_the_fix(
    migrating_app, migrations_copy
):
    """0003 of the branch merged in renamed 0004, its down_revision left at 0002: two heads."""
    add_migration(migrations_copy, "0003_add_name.py", "0003", "0002")
    add_migration(migrations_copy, "0004_add_phone.py", "0004", "0002")
    config = migrating_app.extensions["migrate"].migrate.get_config(str(migrations_copy))
    with pytest.raises(CommandError) as error:
        command.upgrade(config, "head")
    assert str(error.value) == (
        "migrations/versions/0003_add_name.py and 0004_add_phone.py are both newest (two heads):"
        ' set down_revision = "0003" in 0004_add_phone.py'
    )
