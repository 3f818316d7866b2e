import os

import pytest
from apiflask import APIBlueprint, Schema
from apiflask.fields import String
from flask import request
from sqlalchemy import create_engine, text
from werkzeug.debug import DebuggedApplication
from werkzeug.exceptions import NotFound
from werkzeug.test import Client

from app import create_app


def test_root_says_hello(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, World!"


def test_the_app_reads_its_database_from_the_exported_variables(app, monkeypatch):
    exported = os.environ["APPLICATION_DB"]  # this process's copy of the template
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


REAL_SECRET = "3f9c1e7a5b2d48f6a0c4e8b1d7f3a9c2"
INTERNAL_ERROR = {"error": {"code": "internal_error", "message": "internal server error"}}


def app_with_a_bug(config_name: str):
    """A fresh app of `config_name` whose GET /bug raises, as a bug in a view does."""
    broken = create_app(config_name)

    @broken.get("/bug")
    def bug():
        raise RuntimeError("a bug in a view")

    return broken


@pytest.mark.parametrize("config_name", ["testing", "production", "development"])
def test_an_unhandled_error_is_the_json_500_where_no_debugger_wraps_the_app(
    app, monkeypatch, config_name
):
    # Development with FLASK_DEBUG=1 but no debugger: gunicorn under `inv serve`.
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET)
    monkeypatch.setenv("FLASK_DEBUG", "1" if config_name == "development" else "0")
    response = app_with_a_bug(config_name).test_client().get("/bug")
    assert response.status_code == 500
    assert response.json == INTERNAL_ERROR


@pytest.mark.parametrize(
    ("config_name", "client_seen"),
    [("production", ("203.0.113.7", "https")), ("testing", ("127.0.0.1", "http"))],
)
def test_production_believes_the_one_proxy_in_front_and_no_further(
    app, monkeypatch, config_name, client_seen
):
    """Behind nginx (compose/nginx.conf), the client is whom nginx saw, not whom it claims."""
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET)
    monkeypatch.setenv("FLASK_DEBUG", "0")
    fresh, seen = create_app(config_name), []
    fresh.before_request(lambda: seen.append((request.remote_addr, request.scheme)))
    # The client claimed 198.51.100.9; nginx appended the address it saw.
    forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"}
    assert fresh.test_client().get("/", headers=forwarded).status_code == 200
    assert seen == [client_seen]


def test_an_unhandled_error_in_development_is_werkzeugs_debugger_page(app, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    # What `flask run --debug` serves: the app wrapped in the interactive debugger.
    served = DebuggedApplication(app_with_a_bug("development"), evalex=True)
    response = Client(served).get("/bug")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    assert "Traceback" in page
    assert "RuntimeError: a bug in a view" in page
    assert "?__debugger__=yes" in page
    assert "EVALEX = true" in page  # its console, which the PIN unlocks


def app_with_notes():
    """A fresh app with a second blueprint, registered as any new resource's is."""
    notes = APIBlueprint("notes", __name__, url_prefix="/notes")

    class Note(Schema):
        text = String(required=True)

    @notes.post("")
    @notes.input(Note)
    def create_note(json_data: dict):
        return json_data, 201

    @notes.patch("/<int:note_id>")
    @notes.input(Note)
    def change_note(note_id: int, json_data: dict):
        return json_data

    @notes.get("/<int:note_id>")
    def get_note(note_id: int):
        raise NotFound(f"no note with id {note_id}")

    @notes.get("/bug")
    def bug():
        raise RuntimeError("a bug in a view")

    other = create_app("testing")
    other.register_blueprint(notes)
    return other


def test_a_second_blueprint_gets_the_json_guard_and_the_error_envelope(app):
    client = app_with_notes().test_client()
    assert client.post("/notes", json={"text": "hello"}).status_code == 201
    for response in (
        client.post("/notes", data="text=hello"),
        client.patch("/notes/1", data="text=hello"),
    ):
        assert response.status_code == 415
        assert response.json["error"] == {
            "code": "unsupported_media_type",
            "message": "send a JSON object with Content-Type: application/json",
        }
    assert client.get("/notes/1").json["error"]["code"] == "not_found"
    assert client.delete("/notes/1").json["error"]["code"] == "method_not_allowed"
    assert client.get("/notes/bug").json == INTERNAL_ERROR


def test_a_body_that_is_not_json_to_an_unknown_path_or_method_is_a_404_or_405(client):
    assert client.post("/nowhere", data="x=1").status_code == 404
    assert client.put("/users/1", data="x=1").status_code == 405
