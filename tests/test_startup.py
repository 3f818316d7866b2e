"""`flask prepare-database` (the image's entry point) against the test server, in-process.

The container path itself (create, migrate once, a failed migration) is in test_compose.py.
"""

import secrets

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from app.extensions import db
from app.health import connect_arguments
from app.startup import StartupError, create_database, wait_for_server


@pytest.fixture
def url(app):
    """The test database's URL, as the app has it."""
    with app.app_context():
        return make_url(db.engine.url)


def test_prepare_database_finds_the_test_database_at_head(app):
    result = app.test_cli_runner().invoke(args=["prepare-database", "--no-create"])
    assert result.exit_code == 0, result.output
    name = app.config["SQLALCHEMY_DATABASE_URI"].database
    assert f"prepare-database: database {name} on " in result.output
    assert "is at head" in result.output


def test_a_missing_database_is_created_once(url):
    name = f"startup_{secrets.token_hex(4)}"
    try:
        create_database(url.set(database=name), url.database)
        create_database(url.set(database=name), url.database)  # a second replica: no error
        psycopg2.connect(**connect_arguments(url.set(database=name))).close()
    finally:
        connection = psycopg2.connect(**connect_arguments(url))
        connection.autocommit = True
        connection.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.close()


def test_a_wrong_password_fails_at_once_in_one_line(url):
    with pytest.raises(StartupError) as error:
        wait_for_server(url.set(password="wrong"), timeout=60)
    message = error.value.format_message()
    assert message.startswith("prepare-database: PostgreSQL at ")
    assert "password authentication failed" in message and message.endswith("; not serving")


def test_no_server_fails_at_the_deadline(url):
    with pytest.raises(StartupError, match=r"no PostgreSQL answered at 127\.0\.0\.1:1 within"):
        wait_for_server(url.set(host="127.0.0.1", port=1), timeout=0.1)
