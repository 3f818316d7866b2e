"""The steps `tasks.py` composes, a module per concern; importing them changes no process state.

environment    load env/<name>.env < .local.env < the process environment, check it, export it
commands       one-line errors, foreground and background commands, signals
postgres       a connection: wait until ready, create and drop the app's database
servers        the database servers: who provides PostgreSQL (DB_SERVER), a server's lifetime
  local           PostgreSQL binaries run directly: a cluster per environment, throwaway ones
  local_files     where the local servers' files live, and how to touch them safely
  local_template  their binaries, and new clusters copied from a template initdb made once
  compose         the `db` service of a Compose project, throwaway projects for tests
  external        someone else's server
compose        Docker and Compose: the engine's checks, a project per environment
swarm          the production stack on Docker Swarm
app_commands   the app's commands: flask, migrations, gunicorn, pytest
templates      template databases (at head, one per scenario) and this process's copies
scenarios      named data: scenarios/NAME.py, its digest, building it
snapshots      an environment's snapshots, dumps and loads
pytest_database  a pytest plugin: the tests' database, a copy of a migrated template
interruptible  `python -m MODULE`, ended by Ctrl-C with status 130 and no traceback
"""

import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def name_of(project: Path = PROJECT) -> str:
    """The project's name: `name` of [project] in its pyproject.toml."""
    with (project / "pyproject.toml").open("rb") as settings:
        return tomllib.load(settings)["project"]["name"]
