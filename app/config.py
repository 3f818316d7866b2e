"""Configuration classes, filled from the environment when `create_app` runs."""

from collections.abc import Mapping
from typing import ClassVar

from sqlalchemy.engine import URL, make_url

DATABASE_VARIABLES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_HOSTNAME",
    "POSTGRES_PORT",
    "APPLICATION_DB",
)
PLACEHOLDER_SECRETS = {"change-me", "changeme", "secret", "placeholder", "xxx", "todo"}
MIN_SECRET_LENGTH = 16


class ConfigError(RuntimeError):
    """A configuration problem the user fixes by setting a variable; the message says which."""


def database_url(environ: Mapping[str, str]) -> URL:
    """DATABASE_URL as is when set, else a URL built from the POSTGRES_* variables."""
    if environ.get("DATABASE_URL"):
        url = make_url(environ["DATABASE_URL"])
        # Heroku-style postgres:// is not a dialect name SQLAlchemy knows.
        return url.set(drivername="postgresql") if url.drivername == "postgres" else url
    missing = [name for name in DATABASE_VARIABLES if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"missing variable(s) {', '.join(missing)}: set them in env/<environment>.env "
            "or run through `inv`, which loads them"
        )
    port = environ["POSTGRES_PORT"]
    if not port.isdigit():
        raise ConfigError(f"POSTGRES_PORT must be a port number, not {port!r}")
    return URL.create(
        "postgresql+psycopg2",
        username=environ["POSTGRES_USER"],
        password=environ["POSTGRES_PASSWORD"],
        host=environ["POSTGRES_HOSTNAME"],
        port=int(port),
        database=environ["APPLICATION_DB"],
    )


class Config:
    """Settings shared by every environment."""

    DEBUG = False
    TESTING = False
    # A request body larger than this is refused with 413 before it is read.
    MAX_CONTENT_LENGTH = 16 * 1024
    # /health answers 503 when the database has not answered `SELECT 1` by then.
    HEALTH_TIMEOUT = 1.5
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {
        "pool_pre_ping": True,
        # A server that does not answer fails requests in seconds (503), not minutes.
        "connect_args": {"connect_timeout": 5},
    }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> dict:
        """The Flask config mapping for this class, with values read from `environ`."""
        settings = {name: getattr(cls, name) for name in dir(cls) if name.isupper()}
        settings["SECRET_KEY"] = cls.secret_key(environ)
        settings["SQLALCHEMY_DATABASE_URI"] = database_url(environ)
        return settings

    @staticmethod
    def secret_key(environ: Mapping[str, str]) -> str:
        return environ.get("SECRET_KEY") or "not-secret"


class DevelopmentConfig(Config):
    DEBUG = True


class TestingConfig(Config):
    TESTING = True


class ProductionConfig(Config):
    @staticmethod
    def secret_key(environ: Mapping[str, str]) -> str:
        key = environ.get("SECRET_KEY", "").strip()
        if not key or key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(
                "SECRET_KEY is empty, a placeholder or shorter than "
                f"{MIN_SECRET_LENGTH} characters: set a real one, e.g. "
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
    if name not in CONFIGS:
        choices = ", ".join(CONFIGS)
        raise ConfigError(f"unknown FLASK_CONFIG {name!r}: choose one of {choices}")
    return CONFIGS[name].from_environ(environ)
