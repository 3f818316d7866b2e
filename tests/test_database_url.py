"""DATABASE_URL in every form users are handed, connected through for real (the test server)."""

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from app.config import database_url


@pytest.fixture
def server(app) -> URL:
    """The test server's address, from what `inv test` exported (the `app` fixture checks it)."""
    return URL.create(
        "x",
        username=os.environ["POSTGRES_USER"],
        password=os.environ["POSTGRES_PASSWORD"],
        host=os.environ["POSTGRES_HOSTNAME"],
        port=int(os.environ["POSTGRES_PORT"]),
        database=os.environ["APPLICATION_DB"],
    )


def in_form(server: URL, scheme: str, query: str = "") -> str:
    """The server's URL as a PaaS would write it: `scheme://user:password@host:port/db?query`."""
    if server.host.startswith("/"):  # a Unix socket's folder goes in the query
        at = f"host={server.host}&port={server.port}"
        query = f"{at}&{query}" if query else at
        server = URL.create(
            server.drivername, server.username, server.password, database=server.database
        )
    rendered = server.render_as_string(hide_password=False).split("://", 1)[1]
    return f"{scheme}://{rendered}" + (f"?{query}" if query else "")


def query_on(url: URL, sql: str):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_every_form_connects_through_psycopg2(server, scheme):
    url = database_url({"DATABASE_URL": in_form(server, scheme)})
    assert url.get_driver_name() == "psycopg2"
    assert query_on(url, "SELECT current_database()") == server.database


def test_query_options_reach_the_server(server):
    url = database_url({"DATABASE_URL": in_form(server, "postgres", "application_name=from-url")})
    assert query_on(url, "SHOW application_name") == "from-url"


def test_sslmode_is_kept_and_enforced(server):
    """The test server has no TLS: sslmode=require must make the connection fail, not vanish."""
    if server.host.startswith("/"):
        pytest.skip(
            "libpq uses no TLS on a Unix socket, whatever sslmode says: a TCP server's test"
        )
    url = database_url({"DATABASE_URL": in_form(server, "postgres", "sslmode=require")})
    assert url.query["sslmode"] == "require"
    with pytest.raises(Exception, match="SSL"):
        query_on(url, "SELECT 1")
    allowed = database_url({"DATABASE_URL": in_form(server, "postgres", "sslmode=prefer")})
    assert query_on(allowed, "SELECT 1") == 1
