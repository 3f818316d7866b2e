"""The app started without inv (`flask run`, `python wsgi.py`): one line naming `inv dev`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

PROJECT = Path(__file__).resolve().parents[2]
COMMITTED = {k: v or "" for k, v in dotenv_values(PROJECT / "env" / "development.env").items()}
# The committed values as a user sources them by hand, without the password inv brings.
NO_PASSWORD = {k: v for k, v in COMMITTED.items() if k != "POSTGRES_PASSWORD"}
PYTHON_WSGI = [sys.executable, "wsgi.py"]
# One process, no reloader child: should it serve after all, the timeout stops all of it.
FLASK_RUN = [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--no-reload"]


def shell_environ(variables: dict[str, str]) -> dict[str, str]:
    """A new shell's environment, none of inv's variables in it, plus `variables`."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    # A .env of the developer's own, here or in a parent folder, must not change the outcome.
    return {**kept, "FLASK_SKIP_DOTENV": "1", **variables}


@pytest.mark.parametrize(
    ("command", "variables", "message"),
    [
        (PYTHON_WSGI, {}, "wsgi.py is what flask and gunicorn load"),
        (PYTHON_WSGI, COMMITTED, "wsgi.py is what flask and gunicorn load"),
        (FLASK_RUN, {}, "config error: FLASK_CONFIG is not set"),
        (FLASK_RUN, NO_PASSWORD, "config error: missing variable(s) POSTGRES_PASSWORD"),
    ],
    ids=["python-wsgi-bare", "python-wsgi-env-file", "flask-run-bare", "flask-run-env-file"],
)
def test_the_app_started_without_inv_says_to_run_inv_dev(command, variables, message):
    result = subprocess.run(
        command, cwd=PROJECT, env=shell_environ(variables), capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert "`inv dev`" in result.stderr
