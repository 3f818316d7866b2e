"""Configuration classes, filled from the environment when `create_app` runs."""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DATABASE_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOSTNAME",
    "POSTGRES_PORT",
    "APPLICATION_DB",
)
# Words that make a value a placeholder, wherever they are (CHANGE_ME_IN_PRODUCTION).
PLACEHOLDER_WORDS = re.compile(r"change|placeholder|secret|example|default|password|todo|xxx", re.I)
# Six or more consecutive characters: typed, not drawn (a random key seldom has such a run).
SEQUENCE = re.compile(
    "|".join(("0123456789abcdefghijklmnopqrstuvwxyz"[i : i + 6]) for i in range(31))
)
MIN_SECRET_LENGTH = 16
# Fewer distinct characters than this is a pattern, not a secret.
MIN_SECRET_CHARACTERS = 5
# The env files committed with the project: their SECRET_KEYs are public.
COMMITTED_ENV_FILES = Path(__file__).resolve().parent.parent / "env"
# Every form PaaS and managed databases hand out; all go through psycopg2, the driver shipped.
POSTGRES_DRIVERS = {"postgres", "postgresql", "postgresql+psycopg2"}
# What a variable missing outside the tasks (a bare `flask run`, an IDE) asks for.
RUN_THROUGH_INV = (
    "start the app with `inv dev` (or `inv serve`, `inv flask -- ARGS`): it sets the variables, "
    "the database server's password included"
)


class ConfigError(RuntimeError):
    """A configuration problem the user fixes by setting a variable; the message says which."""


def database_url(environ: Mapping[str, str]) -> URL:
    """DATABASE_URL as is when set, else a URL built from the POSTGRES_* variables."""
    if environ.get("DATABASE_URL"):
        return managed_database_url(environ["DATABASE_URL"])
    missing = [name for name in DATABASE_VARIABLES if not environ.get(name)]
    if missing:
        raise ConfigError(f"missing variable(s) {', '.join(missing)}: {RUN_THROUGH_INV}")
    port = environ["POSTGRES_PORT"]
    if not re.fullmatch(r"[0-9]{1,5}", port):
        raise ConfigError(f"POSTGRES_PORT must be a port number, not {port!r}")
    return URL.create(
        "postgresql+psycopg2",
        username=environ["POSTGRES_USER"],
        password=environ["POSTGRES_PASSWORD"],
        host=environ["POSTGRES_HOSTNAME"],
        port=int(port),
        database=environ["APPLICATION_DB"],
    )


def managed_database_url(value: str) -> URL:
    """DATABASE_URL in any PostgreSQL form, on psycopg2, its query options (sslmode) kept."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL: want postgresql://user:password@host:port/name"
        ) from None
    if url.drivername not in POSTGRES_DRIVERS:
        raise ConfigError(
            f"DATABASE_URL is not a PostgreSQL URL (it starts {url.drivername}://): "
            "want postgres://, postgresql:// or postgresql+psycopg2://"
        )
    if not url.database:
        raise ConfigError(
            "DATABASE_URL names no database: want postgresql://user:password@host:port/name"
        )
    # SQLAlchemy maps a bare postgresql:// to psycopg 3, which is not installed.
    return url.set(drivername="postgresql+psycopg2")


def committed_secret_keys() -> set[str]:
    """The SECRET_KEYs of the env files committed in env/ (public: in every clone)."""
    keys = set()
    for path in COMMITTED_ENV_FILES.glob("*.env"):
        if not path.name.endswith(".local.env"):
            keys.add((dotenv_values(path).get("SECRET_KEY") or "").strip())
    return keys - {""}


def weak_secret_key(key: str) -> str | None:
    """Why `key` is not fit for production, or None when it is."""
    if not key:
        return "SECRET_KEY is empty"
    if key in committed_secret_keys():
        return "SECRET_KEY is one committed in env/ (public in every clone)"
    if placeholder := PLACEHOLDER_WORDS.search(key):
        return f"SECRET_KEY is a placeholder (it holds {placeholder[0]!r})"
    if len(key) < MIN_SECRET_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_SECRET_LENGTH} characters"
    if re.fullmatch(r"(.+?)\1+", key, flags=re.DOTALL):
        return "SECRET_KEY is one short part repeated"
    if len(set(key)) < MIN_SECRET_CHARACTERS:
        return f"SECRET_KEY has fewer than {MIN_SECRET_CHARACTERS} different characters"
    if SEQUENCE.search(key.lower()):
        return "SECRET_KEY holds a run of consecutive characters (0123..., abcd...)"
    return None


def seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """The variable `name` as a number of seconds (`default` when unset or empty)."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number < math.inf:
        raise ConfigError(
            f"{name}={value!r} is not a number of seconds: set a positive number "
            f"(the default is {default:g}) or unset it"
        )
    return number


def debug_requested(environ: Mapping[str, str]) -> bool:
    """FLASK_DEBUG as Flask reads it (`flask --debug` sets it too)."""
    return environ.get("FLASK_DEBUG", "").lower() not in ("", "0", "false", "no")


class Config:
    """Settings shared by every environment."""

    DEBUG = False
    TESTING = False
    # Unhandled errors get the JSON 500 in debug and testing too (Flask would re-raise them).
    PROPAGATE_EXCEPTIONS = False
    # A request body larger than this is refused with 413 before it is read.
    MAX_CONTENT_LENGTH = 16 * 1024
    # Seconds (the variables of the same names override them): /health answers 503 after this.
    HEALTH_TIMEOUT = 1.5
    # A request waits at most this long in all for the database's answers, then gets a 503.
    DATABASE_TIMEOUT = 5.0
    # Proxies in front whose X-Forwarded-For and X-Forwarded-Proto the app believes.
    PROXY_HOPS = 0
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> dict:
        """The Flask config mapping for this class, with values read from `environ`."""
        settings = {name: getattr(cls, name) for name in dir(cls) if name.isupper()}
        settings["SECRET_KEY"] = cls.secret_key(environ)
        settings["SQLALCHEMY_DATABASE_URI"] = database_url(environ)
        for name in ("HEALTH_TIMEOUT", "DATABASE_TIMEOUT"):
            settings[name] = seconds(environ, name, settings[name])
        settings["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **cls.SQLALCHEMY_ENGINE_OPTIONS,
            # Every connection busy: a request waits DATABASE_TIMEOUT for one, then gets a 503.
            "pool_timeout": settings["DATABASE_TIMEOUT"],
            # libpq's own limit (whole seconds, 2 at least); the request's deadline is what counts.
            "connect_args": {
                "connect_timeout": max(2, math.ceil(settings["DATABASE_TIMEOUT"])),
                "application_name": "app",  # how PostgreSQL lists its connections
            },
        }
        return settings

    @staticmethod
    def secret_key(environ: Mapping[str, str]) -> str:
        return environ.get("SECRET_KEY") or "not-secret"


class DevelopmentConfig(Config):
    DEBUG = True


class TestingConfig(Config):
    TESTING = True


class ProductionConfig(Config):
    # nginx (compose/nginx.conf): the client's address and scheme are the ones it saw.
    PROXY_HOPS = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> dict:
        if debug_requested(environ):
            raise ConfigError(
                "FLASK_DEBUG is on with the production config: the debugger runs code for "
                "whoever reaches it; unset FLASK_DEBUG (and drop --debug)"
            )
        return super().from_environ(environ)

    @staticmethod
    def secret_key(environ: Mapping[str, str]) -> str:
        key = environ.get("SECRET_KEY", "").strip()
        problem = weak_secret_key(key)
        if problem:
            raise ConfigError(
                f"{problem}: set a real one, e.g. "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return key


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_config(name: str | None, environ: Mapping[str, str]) -> dict:
    """The settings of the config class called `name`, or a ConfigError naming the choices."""
    if not name:
        raise ConfigError(f"FLASK_CONFIG is not set: {RUN_THROUGH_INV}")
    if name not in CONFIGS:
        choices = ", ".join(CONFIGS)
        raise ConfigError(f"unknown FLASK_CONFIG {name!r}: choose one of {choices}")
    return CONFIGS[name].from_environ(environ)
