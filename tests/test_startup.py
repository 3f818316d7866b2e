"""`flask prepare-database` (the image's entry point) against the test server, in-process."""

import secrets

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from app import create_app
from app.database import DatabaseUnavailable, create_database, wait_for_server
from app.extensions import db
from app.health import connect_arguments


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
        assert create_database(connect_arguments(url), name)
        assert not create_database(connect_arguments(url), name)  # a second replica: no error
        psycopg2.connect(**connect_arguments(url.set(database=name))).close()
    finally:
        connection = psycopg2.connect(**connect_arguments(url))
        connection.autocommit = True
        connection.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.close()


def test_a_wrong_password_fails_at_once_in_one_line(app, monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "wrong")
    result = create_app("testing").test_cli_runner().invoke(args=["prepare-database"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.startswith("Error: prepare-database: PostgreSQL at ")
    assert "password authentication failed" in message and message.endswith("; not serving")


def test_no_server_fails_at_the_deadline(url):
    with pytest.raises(
        DatabaseUnavailable, match=r"no PostgreSQL answered at 127\.0\.0\.1:1 within"
    ):
        wait_for_server(connect_arguments(url.set(host="127.0.0.1", port=1)), timeout=0.1)


def test_a_server_that_exited_fails_at_once_with_its_reason(url):
    with pytest.raises(DatabaseUnavailable, match=r"^it exited$"):
        wait_for_server(connect_arguments(url.set(port=1)), timeout=60, gone=lambda: "it exited")
