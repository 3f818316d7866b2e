"""Ten users, user0@example.com to user9@example.com."""

from app.models import User


def build(session):
    session.add_all(User(email=f"user{n}@example.com") for n in range(10))
