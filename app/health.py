"""Whether the database answers, and a request's deadline for it, whatever its server's state."""

import selectors
import time

import psycopg2
from psycopg2 import extensions
from sqlalchemy.engine import URL, make_url


class DatabaseTimeout(Exception):
    pass


def connect_arguments(url: URL | str) -> dict:
    """psycopg2.connect keywords for a SQLAlchemy URL (query options such as sslmode included)."""
    url = make_url(url)
    arguments = url.translate_connect_args(username="user", database="dbname")
    return {**arguments, **url.query}


def wait_until(connection, deadline: float) -> None:
    """Drive an asynchronous psycopg2 connection until its operation completes or the deadline."""
    with selectors.DefaultSelector() as selector:
        while True:
            state = connection.poll()
            if state == extensions.POLL_OK:
                return
            event = selectors.EVENT_READ if state == extensions.POLL_READ else selectors.EVENT_WRITE
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseTimeout
            selector.register(connection.fileno(), event)
            ready = selector.select(None if remaining == float("inf") else remaining)
            selector.unregister(connection.fileno())
            if not ready:
                raise DatabaseTimeout


def database_answers(url: URL | str, timeout: float) -> bool:
    """True when a new connection runs `SELECT 1` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    connection = None
    try:
        # Asynchronous: the deadline holds against a server that accepts, then says nothing.
        connection = psycopg2.connect(**connect_arguments(url), async_=True)
        wait_until(connection, deadline)
        cursor = connection.cursor()
        cursor.execute("SELECT 1")
        wait_until(connection, deadline)
        return cursor.fetchone() == (1,)
    except (psycopg2.Error, DatabaseTimeout, OSError):
        return False
    finally:
        if connection is not None:
            connection.close()


def wait_within_request_deadline(connection, timeout: float) -> None:
    """psycopg2's wait callback: a request waits `timeout` seconds in all for the database."""
    from flask import g, has_request_context

    if has_request_context():
        deadline = g.setdefault("database_deadline", time.monotonic() + timeout)
    else:  # migrations, the CLI: a statement may take as long as it needs
        deadline = float("inf")
    try:
        wait_until(connection, deadline)
    except DatabaseTimeout:
        # SQLAlchemy takes this message for a lost connection: it discards the connection.
        raise psycopg2.OperationalError(
            f"could not receive data from server: no answer within {timeout:g} s"
        ) from None
