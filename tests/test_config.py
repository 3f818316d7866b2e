"""The config classes on their own: no server needed."""

import re

import pytest
from dotenv import dotenv_values

from app.config import COMMITTED_ENV_FILES, ConfigError, database_url, load_config

DATABASE = {
    "POSTGRES_USER": "u",
    "POSTGRES_PASSWORD": "p@ss/word",
    "POSTGRES_HOSTNAME": "db.example",
    "POSTGRES_PORT": "6543",
    "APPLICATION_DB": "application",
}
REAL_SECRET = "3f9c1e7a5b2d48f6a0c4e8b1d7f3a9c2"


def test_url_is_built_from_the_variables_with_the_password_escaped():
    url = database_url(DATABASE)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u", "p@ss/word", "db.example", 6543, "application"
    )  # fmt: skip
    assert "p%40ss%2Fword" in url.render_as_string(hide_password=False)


def test_database_url_wins_over_the_variables():
    url = database_url({**DATABASE, "DATABASE_URL": "postgres://a:b@managed:5432/prod"})
    assert (url.drivername, url.host, url.database) == ("postgresql+psycopg2", "managed", "prod")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("mysql://u:p@db.example/app", "is not a PostgreSQL URL (it starts mysql://)"),
        ("postgresql+asyncpg://u:p@db.example/app", "is not a PostgreSQL URL"),
        ("db.example:5432/app", "is not a database URL"),
        ("postgresql://u:p@db.example", "names no database"),
    ],
)
def test_a_database_url_that_is_not_postgresql_is_named(value, problem):
    with pytest.raises(ConfigError, match=re.escape(f"DATABASE_URL {problem}")):
        database_url({"DATABASE_URL": value})


def test_missing_variables_are_named_in_one_error():
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD, APPLICATION_DB"):
        database_url(
            {k: v for k, v in DATABASE.items() if k not in ("POSTGRES_PASSWORD", "APPLICATION_DB")}
        )


def test_a_port_must_be_a_number():
    with pytest.raises(ConfigError, match="POSTGRES_PORT"):
        database_url({**DATABASE, "POSTGRES_PORT": "auto"})


def test_unknown_config_names_the_choices():
    with pytest.raises(ConfigError, match="development, testing, production"):
        load_config("staging", DATABASE)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "is empty"),
        ("change-me", "is a placeholder"),
        ("change-me-please", "is a placeholder \\(it holds 'change'\\)"),
        ("CHANGE_ME_IN_PRODUCTION", "is a placeholder \\(it holds 'CHANGE'\\)"),
        ("my-flask-secret-key-2026", "is a placeholder \\(it holds 'secret'\\)"),
        ("0123456789abcdef", "holds a run of consecutive characters"),
        ("short", "is shorter than 16"),
        ("s" * 32, "is one short part repeated"),
        ("qwertyuiqwertyui", "is one short part repeated"),
        ("abcabcabcabcabcabcabcabc", "is one short part repeated"),
        ("aaaabbbbccccdddd", "has fewer than 5 different characters"),
    ],
)
def test_production_refuses_a_weak_secret(secret, problem):
    with pytest.raises(ConfigError, match=f"SECRET_KEY {problem}"):
        load_config("production", {**DATABASE, "SECRET_KEY": secret})


COMMITTED_KEYS = {
    path.name: dotenv_values(path)["SECRET_KEY"]
    for path in sorted(COMMITTED_ENV_FILES.glob("*.env"))
    if dotenv_values(path).get("SECRET_KEY") and not path.name.endswith(".local.env")
}


@pytest.mark.parametrize("name", COMMITTED_KEYS)
def test_production_refuses_every_secret_key_committed_in_env(name):
    with pytest.raises(ConfigError, match="SECRET_KEY is one committed in env/"):
        load_config("production", {**DATABASE, "SECRET_KEY": COMMITTED_KEYS[name]})


@pytest.mark.parametrize("flag", ["1", "true", "yes"])
def test_production_refuses_debug(flag):
    with pytest.raises(ConfigError, match="FLASK_DEBUG is on with the production config"):
        load_config("production", {**DATABASE, "SECRET_KEY": REAL_SECRET, "FLASK_DEBUG": flag})


def test_production_takes_debug_off():
    config = load_config("production", {**DATABASE, "SECRET_KEY": REAL_SECRET, "FLASK_DEBUG": "0"})
    assert config["DEBUG"] is False


def test_production_takes_a_real_secret():
    config = load_config("production", {**DATABASE, "SECRET_KEY": REAL_SECRET})
    assert config["SECRET_KEY"] == REAL_SECRET
    assert config["DEBUG"] is False


def test_development_is_debug_and_testing_is_testing():
    assert load_config("development", DATABASE)["DEBUG"] is True
    assert load_config("testing", DATABASE)["TESTING"] is True


def test_the_deadlines_come_from_the_environment_in_seconds():
    environ = {**DATABASE, "DATABASE_TIMEOUT": "2", "HEALTH_TIMEOUT": " 0.5 "}
    settings = load_config("testing", environ)
    assert (settings["DATABASE_TIMEOUT"], settings["HEALTH_TIMEOUT"]) == (2.0, 0.5)
    # Waiting for a pooled connection, or for a new one, is bounded by it too.
    engine = settings["SQLALCHEMY_ENGINE_OPTIONS"]
    assert (engine["pool_timeout"], engine["connect_args"]["connect_timeout"]) == (2.0, 2)
    assert load_config("testing", {**DATABASE, "DATABASE_TIMEOUT": ""})["DATABASE_TIMEOUT"] == 5.0


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_deadline_that_is_not_a_positive_number_is_named(value):
    with pytest.raises(ConfigError, match=f"DATABASE_TIMEOUT='{value}' is not a number of seconds"):
        load_config(
            "production", {**DATABASE, "SECRET_KEY": REAL_SECRET, "DATABASE_TIMEOUT": value}
        )
