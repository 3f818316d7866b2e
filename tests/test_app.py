import os

import pytest
from sqlalchemy import create_engine, text

from app import create_app


def test_root_says_hello(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, World!"


def test_the_app_reads_its_database_from_the_exported_variables(app, monkeypatch):
    exported = os.environ["APPLICATION_DB"]  # test, or test_gw0 ... under pytest-xdist
    monkeypatch.setenv("APPLICATION_DB", "somewhere_else")
    other = create_app("testing")
    assert other.config["SQLALCHEMY_DATABASE_URI"].database == "somewhere_else"
    assert app.config["SQLALCHEMY_DATABASE_URI"].database == exported


@pytest.fixture
def role_with_awkward_password(app):
    """A real login role whose password holds every URL delimiter."""
    password = "p@ss:w/rd?#%&"
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP ROLE IF EXISTS awkward"))
        connection.execute(text(f"CREATE ROLE awkward LOGIN PASSWORD '{password}'"))
    yield "awkward", password
    with engine.connect() as connection:
        connection.execute(text("DROP ROLE awkward"))
    engine.dispose()


def test_a_password_with_url_delimiters_connects(role_with_awkward_password, monkeypatch):
    user, password = role_with_awkward_password
    monkeypatch.setenv("POSTGRES_USER", user)
    monkeypatch.setenv("POSTGRES_PASSWORD", password)
    engine = create_engine(create_app("testing").config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT current_user")) == user
    engine.dispose()
