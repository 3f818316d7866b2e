"""The users API: create, read, list (cursor pages), delete."""

from apiflask import APIBlueprint
from flask import url_for
from psycopg2 import errorcodes
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import NotFound

from app.errors import Conflict
from app.extensions import db
from app.models import MAX_ID, User
from app.schemas import MAX_PAGE, NewUser, PageQuery, UserPage
from app.schemas import User as UserOut

users = APIBlueprint("users", __name__, url_prefix="/users", tag="users")

UNAVAILABLE = {503: "The database is unavailable"}
USER_LINKS = {
    "GetUser": {"operationId": "getUser", "parameters": {"user_id": "$response.body#/id"}},
    "DeleteUser": {"operationId": "deleteUser", "parameters": {"user_id": "$response.body#/id"}},
}


def get_user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id) if user_id <= MAX_ID else None
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


@users.post("")
@users.input(NewUser)
@users.output(
    UserOut, status_code=201, links=USER_LINKS, description="Created; Location is its URL"
)
@users.doc(
    operation_id="createUser",
    summary="Create a user",
    responses={
        409: "A user with this email (ignoring case and Unicode forms) exists",
        413: "The body is too large",
        415: "The body is not JSON",
        **UNAVAILABLE,
    },
)
def create_user(json_data: dict):
    user = User(email=json_data["email"])
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        # The unique folded email decides, so a duplicate that loses a race is a 409 too.
        if getattr(error.orig, "pgcode", None) == errorcodes.UNIQUE_VIOLATION:
            raise Conflict(f"a user with email {user.email} already exists") from None
        raise
    return user, 201, {"Location": url_for("users.get_user", user_id=user.id)}


@users.get("/<int:user_id>")
@users.output(UserOut)
@users.doc(
    operation_id="getUser", summary="One user", responses={404: "No such user", **UNAVAILABLE}
)
def get_user(user_id: int):
    return get_user_or_404(user_id)


@users.get("")
@users.input(PageQuery, location="query")
@users.output(UserPage)
@users.doc(operation_id="listUsers", summary="A page of users in id order", responses=UNAVAILABLE)
def list_users(query_data: dict):
    """`next_after` is the cursor of the next page, or null."""
    limit, after = min(query_data["limit"], MAX_PAGE), query_data["after"]
    rows = db.session.scalars(
        db.select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
    ).all()
    page = rows[:limit]
    return {"users": page, "next_after": page[-1].id if len(rows) > limit else None}


@users.delete("/<int:user_id>")
@users.output({}, status_code=204)
@users.doc(
    operation_id="deleteUser",
    summary="Delete a user",
    responses={404: "No such user", **UNAVAILABLE},
)
def delete_user(user_id: int):
    db.session.delete(get_user_or_404(user_id))
    db.session.commit()
    return ""
