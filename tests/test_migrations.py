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


@pytest.fixture
def numbers(migrations_copy) -> tuple[str, str, str]:
    """The newest migration's number and the two after it (0002, 0003, 0004 in the template)."""
    files = (migrations_copy / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    newest = max(int(path.name[:4]) for path in files)
    return tuple(f"{newest + step:04d}" for step in range(3))


def test_migrate_numbers_the_new_migration_after_the_newest(
    migrating_app, migrations_copy, numbers, monkeypatch
):
    newest, new, _ = numbers
    upgrade()
    models = MetaData()
    db.metadata.tables["users"].to_metadata(models).append_column(Column("probe", String(80)))
    monkeypatch.setitem(db.metadatas, None, models)
    migrate(message="add probe")
    made = script(migrations_copy, new)
    assert Path(made.path).name == f"{new}_add_probe.py"
    assert (made.revision, made.down_revision) == (new, newest)
    assert "add_column(sa.Column('probe'" in Path(made.path).read_text()


def test_an_autogenerate_that_finds_no_change_writes_nothing(migrating_app, migrations_copy):
    """Also after an upgrade in the same process: an earlier run's hook must not stay behind."""
    before = sorted((migrations_copy / "versions").glob("*.py"))
    upgrade()
    migrate(message="nothing")
    assert sorted((migrations_copy / "versions").glob("*.py")) == before


def test_revision_is_numbered_too(migrating_app, migrations_copy, numbers):
    newest, new, _ = numbers
    revision(message="x")
    made = script(migrations_copy, new)
    assert Path(made.path).name == f"{new}_x.py"
    assert made.down_revision == newest


def test_the_apps_own_hook_runs_after_the_numbering(scratch_database, migrations_copy, numbers):
    seen = []

    def own_hook(context, revision, directives):
        seen.append(directives[0].rev_id)

    app = create_app("testing")
    Migrate(app, db, directory=str(migrations_copy), process_revision_directives=own_hook)
    with app.app_context():
        revision(message="x")
        db.engine.dispose()
    assert seen == [numbers[1]]
    assert (migrations_copy / "versions" / f"{numbers[1]}_x.py").exists()


def upgrade_refused(app, directory: Path) -> str:
    """The one line `flask db upgrade` stops with on `directory`'s migrations."""
    config = app.extensions["migrate"].migrate.get_config(str(directory))
    with pytest.raises(CommandError) as error:
        command.upgrade(config, "head")
    return str(error.value)


def test_two_migrations_of_one_number_stop_with_the_fix(migrating_app, migrations_copy, numbers):
    """Two merged branches each added the next migration: Alembic would skip one of them."""
    newest, new, after = numbers
    add_migration(migrations_copy, f"{new}_add_name.py", new, newest)
    add_migration(migrations_copy, f"{new}_add_phone.py", new, newest)
    assert upgrade_refused(migrating_app, migrations_copy) == (
        f"migrations/versions/{new}_add_name.py and {new}_add_phone.py both claim revision {new}:"
        f" renumber one as the newest migration, e.g. rename {new}_add_phone.py to"
        f' {after}_add_phone.py and set in it revision = "{after}" and down_revision = "{new}"'
    )


def test_a_renumbered_migration_still_following_the_old_newest_stops_with_the_fix(
    migrating_app, migrations_copy, numbers
):
    """The branch's migration renumbered, its down_revision left as it was: two heads."""
    newest, new, after = numbers
    add_migration(migrations_copy, f"{new}_add_name.py", new, newest)
    add_migration(migrations_copy, f"{after}_add_phone.py", after, newest)
    assert upgrade_refused(migrating_app, migrations_copy) == (
        f"migrations/versions/{new}_add_name.py and {after}_add_phone.py are both newest"
        f' (two heads): set down_revision = "{new}" in {after}_add_phone.py'
    )
