"""Add user preferences table.

Revision ID: 3ab691d3a566
Revises: 0abb288d754e
Create Date: 2026-02-03 14:15:00

What: a ``user_preferences`` table, one row per user (unique ``user_id``, deleted with the
user), holding time zone, locale, e-mail consent and per-event notification switches (JSON).

Why: the notification centre needs per-event switches, and every new personal setting so far
meant another nullable column on the hot ``users`` table. Settings get their own table; the
existing values are copied over (and the old columns dropped) by revision 240cfb931a0a, once
every service reads from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "3ab691d3a566"
down_revision: str | Sequence[str] | None = "0abb288d754e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "user_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("locale", sa.String(length=16), server_default="en-US", nullable=False),
        sa.Column("email_opt_in", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notification_settings", JSON_DOCUMENT, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_preferences")),
        sa.UniqueConstraint("user_id", name=op.f("uq_user_preferences_user_id")),
    )


def downgrade() -> None:
    op.drop_table("user_preferences")
