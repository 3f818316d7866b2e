"""The service's own endpoints: its root, its health, its API description."""

from flask import Blueprint, current_app

from app.extensions import db
from app.health import database_answers
from app.openapi import openapi_document

main = Blueprint("main", __name__)


@main.get("/")
def hello() -> str:
    return "Hello, World!"


@main.get("/health")
def health():
    """200 when the database answers `SELECT 1` in time, 503 otherwise (no details leak)."""
    timeout = current_app.config["HEALTH_TIMEOUT"]
    if database_answers(db.engine.url, timeout):
        return {"status": "ok", "database": "ok"}
    return {"status": "unavailable", "database": "unavailable"}, 503


@main.get("/openapi.json")
def openapi():
    return openapi_document()
