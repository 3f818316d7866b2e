"""The database models."""

import unicodedata

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.extensions import db

# The largest value of a PostgreSQL integer column such as users.id.
MAX_ID = 2**31 - 1


def folded(email: str) -> str:
    """The form two addresses are compared in: NFKC, case-folded (Äda and äda are one)."""
    # Here, not in SQL: lower() folds only ASCII in a C-locale cluster, which has no ICU.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold())


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    # Unique: the database decides, so concurrent duplicates cannot both win.
    email_folded: Mapped[str] = mapped_column(String(1024), unique=True)

    @validates("email")
    def fold(self, key: str, email: str) -> str:
        self.email_folded = folded(email)
        return email

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
