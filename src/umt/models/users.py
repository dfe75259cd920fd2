"""People on the marketing team and their personal settings."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from umt.models.base import Base, JSONDocument, TimestampMixin

if TYPE_CHECKING:
    from umt.models.brands import Brand
    from umt.models.campaigns import Campaign


class User(TimestampMixin, Base):
    """A team member who signs in, owns brands and campaigns and writes content."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), nullable=False, unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    is_active: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, server_default=sa.true()
    )
    last_login_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    preferences: Mapped[UserPreferences | None] = relationship(
        back_populates="user", uselist=False, cascade="all, delete-orphan", passive_deletes=True
    )
    owned_brands: Mapped[list[Brand]] = relationship(back_populates="owner")
    owned_campaigns: Mapped[list[Campaign]] = relationship(back_populates="owner")


class UserPreferences(TimestampMixin, Base):
    """One row per user: time zone, locale, e-mail consent and notification switches."""

    __tablename__ = "user_preferences"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False, server_default="UTC")
    locale: Mapped[str] = mapped_column(sa.String(16), nullable=False, server_default="en-US")
    email_opt_in: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, server_default=sa.false()
    )
    #: e.g. {"campaign_launched": true, "weekly_digest": false}
    notification_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)

    user: Mapped[User] = relationship(back_populates="preferences")
