"""email compared folded

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 15:20:00

Emails are unique in the form the app computes (app.models.folded: NFKC, case-folded), no
longer by PostgreSQL's lower(), which folds ASCII only in a C-locale cluster.
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def folded(email: str) -> str:
    """app.models.folded as it is now: a migration keeps its own copy, as it was written."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold())


def upgrade():
    op.add_column("users", sa.Column("email_folded", sa.String(length=1024), nullable=True))
    users = op.get_bind()
    for user_id, email in users.execute(sa.text("SELECT id, email FROM users")).all():
        users.execute(
            sa.text("UPDATE users SET email_folded = :folded WHERE id = :id"),
            {"folded": folded(email), "id": user_id},
        )
    op.alter_column("users", "email_folded", nullable=False)
    # Fails if two existing emails are one folded: resolve those rows first.
    op.create_unique_constraint("users_email_folded_key", "users", ["email_folded"])
    op.drop_index("users_email_lower_key", table_name="users")


def downgrade():
    op.create_index(
        "users_email_lower_key", "users", [sa.literal_column("lower(email)")], unique=True
    )
    op.drop_constraint("users_email_folded_key", "users", type_="unique")
    op.drop_column("users", "email_folded")
