"""The users API: create, read, list (cursor pages), delete."""

import json
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, request, url_for
from psycopg2 import errorcodes
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from app.errors import Conflict, InvalidField
from app.extensions import db
from app.models import MAX_ID, User

users = Blueprint("users", __name__, url_prefix="/users")

DEFAULT_PAGE = 50
MAX_PAGE = 200


def normalize_email(value: Any) -> str:
    """The address as email-validator normalises it (syntax only, no DNS lookup): trimmed, the
    domain lower-cased and in one form (Unicode) whether it came as Unicode or punycode; at
    most 254 characters, 64 before the @ (strict)."""
    if not isinstance(value, str):
        raise InvalidField("email", "must be a string")
    try:
        return validate_email(value.strip(), check_deliverability=False, strict=True).normalized
    except EmailNotValidError as error:
        raise InvalidField("email", str(error)) from None


def json_object() -> dict:
    """The request's JSON body, which must be an object (415, 400 otherwise)."""
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON object with Content-Type: application/json")
    try:
        body = json.loads(request.get_data())
    except ValueError as error:
        raise BadRequest(f"malformed JSON: {error}") from None
    except RecursionError:  # a deeply nested array fits in the size limit
        raise BadRequest("malformed JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def query_int(name: str, default: int, minimum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < minimum:
        raise InvalidField(name, f"must be a whole number, at least {minimum}")
    return int(raw)


def user_json(user: User) -> dict:
    return {"id": user.id, "email": user.email}


def get_user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id) if user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


@users.post("")
def create_user():
    body = json_object()
    if "email" not in body:
        raise InvalidField("email", "is required")
    user = User(email=normalize_email(body["email"]))
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        # The unique index on lower(email) decides, so a duplicate that loses a race is a 409 too.
        if getattr(error.orig, "pgcode", None) == errorcodes.UNIQUE_VIOLATION:
            raise Conflict(f"a user with email {user.email} already exists") from None
        raise
    location = url_for("users.get_user", user_id=user.id)
    return user_json(user), 201, {"Location": location}


@users.get("/<int:user_id>")
def get_user(user_id: int):
    return user_json(get_user_or_404(user_id))


@users.get("")
def list_users():
    """A page of users in id order; `next_after` is the cursor of the next page, or null."""
    limit = min(query_int("limit", DEFAULT_PAGE, 1), MAX_PAGE)
    after = query_int("after", 0, 0)
    rows = db.session.scalars(
        db.select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
    ).all()
    page = rows[:limit]
    next_after = page[-1].id if len(rows) > limit else None
    return {"users": [user_json(user) for user in page], "next_after": next_after}


@users.delete("/<int:user_id>")
def delete_user(user_id: int):
    db.session.delete(get_user_or_404(user_id))
    db.session.commit()
    return "", 204
