"""The site's root."""

from flask import Blueprint

main = Blueprint("main", __name__)


@main.get("/")
def hello() -> str:
    return "Hello, World!"
