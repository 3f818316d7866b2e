"""The environment: env/<name>.env < env/<name>.local.env < the process's, checked, exported."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from steps import PROJECT
from steps.commands import fail, say

ENVIRONMENTS = ("development", "testing", "production")
DB_SERVERS = ("auto", "compose", "local", "external")
REQUIRED_VARIABLES = (
    "FLASK_CONFIG",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOSTNAME",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "APPLICATION_DB",
)
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True)
class Env:
    """The loaded environment: its name and its variables (already exported)."""

    name: str
    vars: dict[str, str]
    # The names the process environment set (they override the env/ files).
    given: frozenset[str] = frozenset()

    def __getitem__(self, key: str) -> str:
        return self.vars[key]

    @property
    def db_server(self) -> str:
        return self.vars.get("DB_SERVER") or "auto"

    @property
    def production(self) -> bool:
        return self.name == "production"


# Linux refuses to start a program whose environment holds a longer NAME=value (MAX_ARG_STRLEN).
LONGEST_VARIABLE = 128 * 1024 - 1


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of one dotenv file; a line it cannot parse is an error, not a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        fail(f"{shown(path)}:{line}: not UTF-8 text: save the file as UTF-8")
    except OSError as error:
        fail(f"cannot read {shown(path)}: {error.strerror}")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error or (binding.key and binding.value is None):
            line = binding.original.line
            fail(f"{shown(path)}:{line}: cannot parse this line (want NAME=value)")
    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}


def shown(path: Path) -> str:
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)


def check_variables(name: str, values: Mapping[str, str]) -> None:
    """One error naming every missing or malformed variable, before anything starts."""
    missing = [n for n in REQUIRED_VARIABLES if not values.get(n)]
    production = "production" in (name, values.get("FLASK_CONFIG"))
    if production and not values.get("SECRET_KEY"):
        missing.append("SECRET_KEY")
    if missing:
        fail(
            f"missing variable(s) {', '.join(missing)}: set them in env/{name}.env, "
            f"env/{name}.local.env or the environment"
        )
    for var in ("APPLICATION_DB", "POSTGRES_DB"):
        if not IDENTIFIER.fullmatch(values[var]):
            fail(
                f"{var}={values[var]!r} is not a plain identifier: use letters, digits and _ "
                "(not starting with a digit), at most 63 characters"
            )
    if values.get("DB_SERVER", "auto") not in DB_SERVERS:
        fail(f"unknown DB_SERVER {values['DB_SERVER']!r}: choose one of {', '.join(DB_SERVERS)}")
    port = values["POSTGRES_PORT"]
    if not number_in(port, 1, 65535) and port != "auto":
        fail(f"POSTGRES_PORT={port!r} is not a port number (or `auto`, a free port)")
    if port == "auto" and values.get("DB_SERVER") == "external":
        fail("POSTGRES_PORT=auto needs a server this project starts, not DB_SERVER=external")
    for var in ("FLASK_RUN_PORT", "WEB_PORT"):
        value = values.get(var) or "1"
        if not number_in(value, 1, 65535):
            fail(f"{var}={value!r} is not a port number (1 to 65535)")
    for var in ("WEB_CONCURRENCY", "GUNICORN_CONNECTIONS", "WEB_REPLICAS"):
        if values.get(var) and not number_in(values[var], 1, 10_000):
            fail(f"{var}={values[var]!r} is not a whole number from 1 to 10000")
    if values["FLASK_CONFIG"] not in ENVIRONMENTS:
        choices = ", ".join(ENVIRONMENTS)
        fail(f"unknown FLASK_CONFIG {values['FLASK_CONFIG']!r}: choose one of {choices}")
    if values["FLASK_CONFIG"] != name:
        fail(
            f"FLASK_CONFIG={values['FLASK_CONFIG']} with APPLICATION_CONFIG={name}: they must "
            f"agree (env/{name}.env sets FLASK_CONFIG; unset it where you set it)"
        )
    if re.search(r"[\x00-\x1f\x7f'\"\\]", values["POSTGRES_USER"]):
        fail("POSTGRES_USER has a quote, a backslash or a control character: use a plain name")
    if re.search(r"[\x00-\x1f\x7f]", values["POSTGRES_PASSWORD"]):
        fail("POSTGRES_PASSWORD has a newline or another control character: tools cut it there")
    for var, value in values.items():
        if "\0" in var or "\0" in value:
            fail(f"{var!r} holds a NUL byte, which no environment can carry: remove it")
        if len(var) + len(value) + 1 > LONGEST_VARIABLE:
            fail(
                f"{var} is {len(value):,} characters long: more than a program's environment can carry"
            )


def number_in(value: str, low: int, high: int) -> bool:
    """Whether `value` is ASCII digits for a number from low to high (isdigit takes ² too)."""
    return bool(re.fullmatch(r"[0-9]{1,6}", value)) and low <= int(value) <= high


def check_app_config(values: Mapping[str, str]) -> None:
    """Ask the app's own config whether it will start, where it checks more than the above."""
    # Only then: importing the app costs most of a second.
    app_reads = ("DATABASE_URL", "DATABASE_TIMEOUT", "HEALTH_TIMEOUT")
    if values["FLASK_CONFIG"] != "production" and not any(values.get(v) for v in app_reads):
        return
    from app.config import ConfigError, load_config

    # The port may still be `auto`: it is picked when the server starts.
    probe = {**values, "POSTGRES_PORT": "5432"} if values["POSTGRES_PORT"] == "auto" else values
    try:
        load_config(values["FLASK_CONFIG"], probe)
    except ConfigError as error:
        fail(str(error))


# Commands that create or start nothing (compose down, logs) need no real secret.
UNUSED_SECRET = "unused-by-this-command"


def read_env(
    name: str | None = None, environ: Mapping[str, str] | None = None, secrets: bool = True
) -> Env:
    """The checked environment `name` (default APPLICATION_CONFIG, else development), not exported.

    secrets=False: SECRET_KEY and POSTGRES_PASSWORD may be missing (for what starts nothing).
    """
    environ = os.environ if environ is None else environ
    # A misspelt name is an error even where the task chooses the environment (inv test).
    for given in (environ.get("APPLICATION_CONFIG"), name):
        if given and given not in ENVIRONMENTS:
            fail(f"unknown APPLICATION_CONFIG {given!r}: choose one of {', '.join(ENVIRONMENTS)}")
    name = name or environ.get("APPLICATION_CONFIG") or "development"
    path = PROJECT / "env" / f"{name}.env"
    if not path.is_file():
        fail(f"missing env file env/{name}.env: restore it with `git checkout -- env/{name}.env`")
    values = read_env_file(path)
    local = path.with_name(f"{name}.local.env")
    if local.is_file():
        local_values = read_env_file(local)
        values.update(local_values)
        held = sorted({"SECRET_KEY", "POSTGRES_PASSWORD", "DATABASE_URL"} & local_values.keys())
        if held and local.stat().st_mode & 0o077:
            say(
                f"{shown(local)} holds {', '.join(held)} and others may read it: `chmod 600 {shown(local)}`"
            )
    values.update(environ)
    values["APPLICATION_CONFIG"] = name
    if not values.get("WEB_IMAGE"):
        from steps.compose import default_web_image  # compose imports this module

        values["WEB_IMAGE"] = default_web_image(name)
    # Only what the tasks start serves the tests: a database named in the shell is never touched.
    if name == "testing" and values.pop("DATABASE_URL", None):
        say(
            "DATABASE_URL is ignored by the testing environment: the tests use the database the tasks start"
        )
    if not secrets:
        for var in ("SECRET_KEY", "POSTGRES_PASSWORD"):
            values[var] = values.get(var) or UNUSED_SECRET
    check_variables(name, values)
    if secrets:
        check_app_config(values)
    return Env(name, values, frozenset(environ))


def where_to_set(env: Env, variable: str) -> str:
    """Where the user changes `variable`: the environment overrides the env/ files."""
    if variable in env.given:
        return f"change {variable} in your environment (it overrides env/{env.name}.env)"
    return f"set {variable} in env/{env.name}.local.env"


def load_env(name: str | None = None, secrets: bool = True) -> Env:
    """Read the environment `name` and export it: the app and every command read it."""
    env = read_env(name, secrets=secrets)
    if env.name == "testing":
        os.environ.pop("DATABASE_URL", None)
    os.environ.update(env.vars)
    # Flask's CLI would load .flaskenv and .env from every folder above this one, where
    # another user may have written them: the env files are read here, and only these.
    os.environ["FLASK_SKIP_DOTENV"] = "1"
    return env


def export(**variables: object) -> None:
    """Hand values to every command run after this (flask, pytest): the app reads them."""
    os.environ.update({k: str(v) for k, v in variables.items()})


@contextlib.contextmanager
def exported(**variables: object) -> Iterator[None]:
    """`export` for this block only: the values before it are back after it."""
    before = {name: os.environ.get(name) for name in variables}
    export(**variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
