"""`inv db.migrate` and `inv db.upgrade` on numbered migrations, run as a user runs them: the
real `inv` in a copy of the project, against its own local development server."""

import pytest
from alembic.script import ScriptDirectory
from project_copy import free_port, local_inv, module_copy

pytestmark = pytest.mark.e2e


project = module_copy("migration_tasks")
inv = local_inv

EMPTY_MIGRATION = '''"""add phone"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def test_migrate_numbers_the_file_and_a_second_0003_stops_the_upgrade(project):
    port = str(free_port())
    models = project / "app" / "models.py"
    models.write_text(models.read_text() + "\n    name = db.Column(db.String(80))\n")
    try:
        assert inv(project, "db.init", POSTGRES_PORT=port).returncode == 0
        made = inv(project, "db.migrate", "-m", "add name", POSTGRES_PORT=port)
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip().splitlines()[-1] == "migrations/versions/0003_add_name.py"
        new = ScriptDirectory(str(project / "migrations")).get_revision("0003")
        assert (new.revision, new.down_revision) == ("0003", "0002")

        # A branch merged in that added a 0003 of its own.
        (project / "migrations" / "versions" / "0003_add_phone.py").write_text(EMPTY_MIGRATION)
        upgraded = inv(project, "db.upgrade", POSTGRES_PORT=port)
        assert upgraded.returncode != 0
        assert (
            "migrations/versions/0003_add_name.py and 0003_add_phone.py both claim revision 0003:"
            " renumber one as the newest migration, e.g. rename 0003_add_phone.py to"
            ' 0004_add_phone.py and set in it revision = "0004" and down_revision = "0003"'
        ) in upgraded.stderr
    finally:
        inv(project, "db.down")
