"""The database models."""

from sqlalchemy import String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

# The largest value of a PostgreSQL integer column such as users.id.
MAX_ID = 2**31 - 1


class User(db.Model):
    __tablename__ = "users"
    # Uniqueness ignores case: the database decides, so concurrent duplicates cannot both win.
    __table_args__ = (db.Index("users_email_lower_key", func.lower(text("email")), unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
