"""case-insensitive unique email

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:00:42.707391

"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # Fails if two existing emails differ only in case: resolve those rows first.
    op.create_index(
        "users_email_lower_key", "users", [sa.literal_column("lower(email)")], unique=True
    )
    op.drop_constraint("users_email_key", "users", type_="unique")


def downgrade():
    op.create_unique_constraint("users_email_key", "users", ["email"])
    op.drop_index("users_email_lower_key", table_name="users")
