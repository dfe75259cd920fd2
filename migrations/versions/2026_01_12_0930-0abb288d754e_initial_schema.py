"""Initial schema: users, brands, channels, campaigns, content items.

Revision ID: 0abb288d754e
Revises:
Create Date: 2026-01-12 09:30:00

What: the first tables of the UMT app, as the prototype used them. Users still carry their
personal settings inline (``timezone``, ``locale``, ``email_opt_in``); campaigns and content
items use native enums for their lifecycle; brand, channel and campaign settings are JSON
documents (JSONB on PostgreSQL).

Why: the prototype's ad-hoc ``create_all()`` is replaced by versioned migrations, so every
environment (laptops, CI, staging, production) gets the same schema, step by step.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0abb288d754e"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: Enum types of this revision (PostgreSQL: named types; MariaDB: inline ENUM; SQLite: VARCHAR).
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "campaign_status": ("draft", "scheduled", "active", "paused", "completed", "archived"),
    "channel_type": ("email", "social", "search", "display", "web", "sms"),
    "content_type": ("blog_post", "social_post", "email", "ad", "landing_page", "video"),
    "content_status": ("draft", "in_review", "approved", "scheduled", "published", "archived"),
}


def enum_type(name: str) -> sa.Enum:
    """A fresh Enum object each time: a type object is bound to the table that uses it."""
    return sa.Enum(*ENUM_VALUES[name], name=name)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        # Legacy personal settings; moved to user_preferences by revision 240cfb931a0a.
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("email_opt_in", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )

    op.create_table(
        "brands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("website_url", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("settings", JSON_DOCUMENT, nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_brands_owner_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brands")),
        sa.UniqueConstraint("slug", name=op.f("uq_brands_slug")),
    )
    op.create_index(op.f("ix_brands_owner_id"), "brands", ["owner_id"])

    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", enum_type("channel_type"), nullable=False),
        sa.Column("external_account_id", sa.String(length=200), nullable=True),
        sa.Column("config", JSON_DOCUMENT, nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["brand_id"],
            ["brands.id"],
            name=op.f("fk_channels_brand_id_brands"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.UniqueConstraint("brand_id", "name", name=op.f("uq_channels_brand_id_name")),
    )
    op.create_index(op.f("ix_channels_brand_id"), "channels", ["brand_id"])

    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("status", enum_type("campaign_status"), server_default="draft", nullable=False),
        sa.Column("objective", sa.Text(), nullable=True),
        sa.Column("budget", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("targeting", JSON_DOCUMENT, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "starts_at IS NULL OR ends_at IS NULL OR ends_at >= starts_at",
            name=op.f("ck_campaigns_dates_ordered"),
        ),
        sa.ForeignKeyConstraint(
            ["brand_id"],
            ["brands.id"],
            name=op.f("fk_campaigns_brand_id_brands"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_campaigns_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(op.f("ix_campaigns_brand_id"), "campaigns", ["brand_id"])
    op.create_index(op.f("ix_campaigns_owner_id"), "campaigns", ["owner_id"])
    op.create_index(op.f("ix_campaigns_status"), "campaigns", ["status"])

    op.create_table(
        "content_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content_type", enum_type("content_type"), nullable=False),
        sa.Column("status", enum_type("content_status"), server_default="draft", nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("assets", JSON_DOCUMENT, nullable=True),
        sa.Column("publish_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_content_items_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_content_items_channel_id_channels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_content_items_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_items")),
    )
    op.create_index(op.f("ix_content_items_campaign_id"), "content_items", ["campaign_id"])
    op.create_index(op.f("ix_content_items_channel_id"), "content_items", ["channel_id"])
    op.create_index(op.f("ix_content_items_author_id"), "content_items", ["author_id"])
    op.create_index(op.f("ix_content_items_status"), "content_items", ["status"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it, on every backend.
    op.drop_table("content_items")
    op.drop_table("campaigns")
    op.drop_table("channels")
    op.drop_table("brands")
    op.drop_table("users")
    # PostgreSQL keeps enum types after their tables are gone; drop them so the next upgrade
    # can create them again. A no-op on MariaDB (inline ENUM) and SQLite (VARCHAR).
    for name in ENUM_VALUES:
        sa.Enum(name=name).drop(op.get_bind(), checkfirst=not context.is_offline_mode())
