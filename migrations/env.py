import logging
import warnings
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from alembic.util import CommandError, load_python_file
from flask import current_app

# The Alembic Config object: the values of the .ini file in use.
config = context.config
scripts = context.script

# Logging as alembic.ini sets it, the app's and pytest's loggers kept working.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")


config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def highest_number() -> int:
    """The highest revision id made of digits only (0 when there is none)."""
    numbers = (int(s.revision) for s in scripts.walk_revisions() if s.revision.isdecimal())
    return max(numbers, default=0)


def shown(path: str | Path) -> str:
    """A migration's path from the project's folder: migrations/versions/0003_add_name.py."""
    return str(Path(path).relative_to(Path(scripts.dir).resolve().parent))


def check_one_line_history() -> None:
    """Fail with the fix when two migrations claim one number, or two are newest (two heads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Alembic's "present more than once" names no file
        heads = sorted(scripts.get_heads())
    loaded = {Path(s.path) for s in scripts.walk_revisions()}
    for path in sorted(Path(scripts.versions).resolve().glob("*.py")):
        if path not in loaded and not path.name.startswith(("_", ".")):
            # Alembic kept another file of the same revision id and skips this one.
            claimed = load_python_file(str(path.parent), path.name).revision
            first, second = sorted([path, Path(scripts.get_revision(claimed).path)])
            newest = highest_number()
            renamed = f"{newest + 1:04d}_{second.name.partition('_')[2]}"
            raise CommandError(
                f"{shown(first)} and {second.name} both claim revision {claimed}: renumber one"
                f" as the newest migration, e.g. rename {second.name} to {renamed} and set in it"
                f' revision = "{newest + 1:04d}" and down_revision = "{newest:04d}"'
            )
    if len(heads) > 1:
        shared = {s.revision for s in scripts.iterate_revisions(heads[-2], "base")}
        branch = [
            s for s in scripts.iterate_revisions(heads[-1], "base") if s.revision not in shared
        ]
        first = Path(branch[-1].path).name
        raise CommandError(
            f"{shown(scripts.get_revision(heads[-2]).path)} and {Path(branch[0].path).name} are"
            f' both newest (two heads): set down_revision = "{heads[-2]}" in {first}'
        )


def number_the_revision(context, revision, directives):
    """Name a new migration NNNN_slug.py, numbered after the highest numbered one."""
    directives[0].rev_id = f"{highest_number() + 1:04d}"


def skip_an_empty_autogenerate(context, revision, directives):
    """Write no migration when autogenerate finds no change in the schema."""
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def run_migrations_offline():
    """Run the migrations offline: from the URL alone, emitting their SQL to the script output."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=get_metadata(), literal_binds=True)

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run the migrations online, on a connection of the app's engine."""
    conf_args = current_app.extensions["migrate"].configure_args
    # An app's own process_revision_directives replaces the skip; run after the numbering, it wins.
    then = conf_args.get("process_revision_directives") or skip_an_empty_autogenerate

    def process_revision_directives(context, revision, directives):
        number_the_revision(context, revision, directives)
        then(context, revision, directives)

    # A copy: Migrate's dict outlives this run, and a hook left in it would serve the next run.
    conf_args = {**conf_args, "process_revision_directives": process_revision_directives}
    connectable = get_engine()

    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)

        with context.begin_transaction():
            context.run_migrations()


check_one_line_history()
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
