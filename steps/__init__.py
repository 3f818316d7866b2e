"""The steps `tasks.py` composes, a module per concern; importing them changes no process state.

environment  load env/<name>.env < .local.env < the process environment, check it, export it
commands     one-line errors, foreground and background commands, signals
postgres     a connection: wait until ready, create and drop the app's database
local        PostgreSQL binaries run directly: clusters, template copies, root's server user
compose      Docker and Compose: projects, the `db` service, throwaway projects
servers      who runs PostgreSQL (DB_SERVER), and a server's lifetime around a task
app_commands the app's commands: flask, migrations, gunicorn, pytest
pytest_longest_first  a pytest plugin of `inv test --e2e`: the longest modules start first
interruptible  `python -m MODULE`, ended by Ctrl-C with status 130 and no traceback
swarm        the production stack on Docker Swarm
"""

import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def name_of(project: Path = PROJECT) -> str:
    """The project's name: `name` of [project] in its pyproject.toml."""
    with (project / "pyproject.toml").open("rb") as settings:
        return tomllib.load(settings)["project"]["name"]
