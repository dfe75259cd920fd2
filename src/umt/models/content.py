"""Content items: the posts, e-mails, ads and pages a campaign publishes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from umt.models.base import Base, JSONDocument, TimestampMixin
from umt.models.enums import ContentStatus, ContentType, content_status_type, content_type_type

if TYPE_CHECKING:
    from umt.models.brands import Channel
    from umt.models.campaigns import Campaign
    from umt.models.users import User


class ContentItem(TimestampMixin, Base):
    """One piece of content, written by a user, published on a channel at ``publish_at``.

    The scheduler asks "what is scheduled and due?", hence the (status, publish_at) index.
    """

    __tablename__ = "content_items"
    __table_args__ = (sa.Index(None, "status", "publish_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True
    )
    channel_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("channels.id", ondelete="SET NULL"), index=True
    )
    author_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    content_type: Mapped[ContentType] = mapped_column(content_type_type, nullable=False)
    status: Mapped[ContentStatus] = mapped_column(
        content_status_type, nullable=False, server_default=ContentStatus.DRAFT.value
    )
    body: Mapped[str | None] = mapped_column(sa.Text)
    #: media and links: [{"kind": "image", "url": "https://cdn.example/hero.png"}]
    assets: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)
    publish_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))

    campaign: Mapped[Campaign] = relationship(back_populates="content_items")
    channel: Mapped[Channel | None] = relationship(back_populates="content_items")
    author: Mapped[User | None] = relationship()
