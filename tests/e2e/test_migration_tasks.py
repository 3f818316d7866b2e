"""`inv db.migrate` and `inv db.upgrade` on numbered migrations, in a copy of the project."""

from alembic.script import ScriptDirectory
from project_copy import free_port, local_inv, module_copy

project = module_copy("migration_tasks")
inv = local_inv

EMPTY_MIGRATION = '''"""add phone"""

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def test_migrate_numbers_the_file_and_a_second_of_its_number_stops_the_upgrade(project):
    port = str(free_port())
    scripts = ScriptDirectory(str(project / "migrations"))
    newest = int(scripts.get_current_head())
    new, after = f"{newest + 1:04d}", f"{newest + 2:04d}"
    models = project / "app" / "models.py"
    original = models.read_text()
    models.write_text(
        original.replace(
            "class User(db.Model):",
            "class User(db.Model):\n    probe = db.Column(db.String(80))",
            1,
        )
    )
    try:
        assert inv(project, "db.init", POSTGRES_PORT=port).returncode == 0
        made = inv(project, "db.migrate", "-m", "add probe", POSTGRES_PORT=port)
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip().splitlines()[-1] == f"migrations/versions/{new}_add_probe.py"
        script = ScriptDirectory(str(project / "migrations")).get_revision(new)
        assert (script.revision, script.down_revision) == (new, f"{newest:04d}")

        # A branch merged in that added a migration of the same number.
        phone = EMPTY_MIGRATION.format(revision=new, down_revision=f"{newest:04d}")
        (project / "migrations" / "versions" / f"{new}_add_phone.py").write_text(phone)
        upgraded = inv(project, "db.upgrade", POSTGRES_PORT=port)
        assert upgraded.returncode != 0
        assert (
            f"migrations/versions/{new}_add_phone.py and {new}_add_probe.py both claim revision"
            f" {new}: renumber one as the newest migration, e.g. rename {new}_add_probe.py to"
            f' {after}_add_probe.py and set in it revision = "{after}" and down_revision = "{new}"'
        ) in upgraded.stderr
    finally:
        models.write_text(original)
        for path in (project / "migrations" / "versions").glob(f"{new}_*.py"):
            path.unlink()
        inv(project, "db.down")
