"""The database models."""

from app.extensions import db

# The largest value of a PostgreSQL integer column such as users.id.
MAX_ID = 2**31 - 1


class User(db.Model):
    __tablename__ = "users"
    # Uniqueness ignores case: the database decides, so concurrent duplicates cannot both win.
    __table_args__ = (
        db.Index("users_email_lower_key", db.func.lower(db.text("email")), unique=True),
    )

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(254), nullable=False)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
