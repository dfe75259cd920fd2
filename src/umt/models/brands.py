"""Brands the team markets, and the channels each brand publishes through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from umt.models.base import Base, JSONDocument, TimestampMixin
from umt.models.enums import ChannelType, channel_type_type

if TYPE_CHECKING:
    from umt.models.campaigns import Campaign
    from umt.models.content import ContentItem
    from umt.models.users import User


class Brand(TimestampMixin, Base):
    """A brand (or product line) with its own voice, channels and campaigns."""

    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    slug: Mapped[str] = mapped_column(sa.String(100), nullable=False, unique=True)
    website_url: Mapped[str | None] = mapped_column(sa.String(500))
    description: Mapped[str | None] = mapped_column(sa.Text)
    #: brand voice, colours, default hashtags: {"voice": "playful", "colors": ["#ff6600"]}
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    owner_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )

    owner: Mapped[User | None] = relationship(back_populates="owned_brands")
    channels: Mapped[list[Channel]] = relationship(
        back_populates="brand", cascade="all, delete-orphan", passive_deletes=True
    )
    campaigns: Mapped[list[Campaign]] = relationship(
        back_populates="brand", cascade="all, delete-orphan", passive_deletes=True
    )


class Channel(TimestampMixin, Base):
    """Where a brand publishes: a newsletter list, a social account, an ad account, a site."""

    __tablename__ = "channels"
    __table_args__ = (sa.UniqueConstraint("brand_id", "name"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    brand_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("brands.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    type: Mapped[ChannelType] = mapped_column(channel_type_type, nullable=False)
    external_account_id: Mapped[str | None] = mapped_column(sa.String(200))
    #: provider-specific settings (list id, page id, posting limits); never credentials
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    is_active: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, server_default=sa.true()
    )

    brand: Mapped[Brand] = relationship(back_populates="channels")
    content_items: Mapped[list[ContentItem]] = relationship(back_populates="channel")
