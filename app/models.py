"""The database models."""

from app.extensions import db


class User(db.Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(254), unique=True, nullable=False)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"
