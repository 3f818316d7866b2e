"""10,000 users, for pages, query plans and timings."""

from sqlalchemy import insert

from app.models import User, folded


def build(session):
    emails = [f"person{n:05}@example.org" for n in range(10_000)]
    # One INSERT for all: the ORM's per-object bookkeeping is not needed here.
    session.execute(insert(User), [{"email": e, "email_folded": folded(e)} for e in emails])
