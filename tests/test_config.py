"""The config classes on their own: no server needed."""

import pytest

from app.config import ConfigError, database_url, load_config

DATABASE = {
    "POSTGRES_USER": "u",
    "POSTGRES_PASSWORD": "p@ss/word",
    "POSTGRES_HOSTNAME": "db.example",
    "POSTGRES_PORT": "6543",
    "APPLICATION_DB": "application",
}
REAL_SECRET = "0123456789abcdef0123456789abcdef"


def test_url_is_built_from_the_variables_with_the_password_escaped():
    url = database_url(DATABASE)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u", "p@ss/word", "db.example", 6543, "application"
    )  # fmt: skip
    assert "p%40ss%2Fword" in url.render_as_string(hide_password=False)


def test_database_url_wins_over_the_variables():
    url = database_url({**DATABASE, "DATABASE_URL": "postgres://a:b@managed:5432/prod"})
    assert (url.drivername, url.host, url.database) == ("postgresql", "managed", "prod")


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


@pytest.mark.parametrize("secret", ["", "change-me", "short"])
def test_production_refuses_a_placeholder_secret(secret):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config("production", {**DATABASE, "SECRET_KEY": secret})


def test_production_takes_a_real_secret():
    config = load_config("production", {**DATABASE, "SECRET_KEY": REAL_SECRET})
    assert config["SECRET_KEY"] == REAL_SECRET
    assert config["DEBUG"] is False


def test_development_is_debug_and_testing_is_testing():
    assert load_config("development", DATABASE)["DEBUG"] is True
    assert load_config("testing", DATABASE)["TESTING"] is True
