"""Marketing campaigns: a brand's time-boxed push with a budget and an audience."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from umt.models.base import Base, JSONDocument, TimestampMixin
from umt.models.enums import CampaignStatus, campaign_status_type

if TYPE_CHECKING:
    from umt.models.brands import Brand
    from umt.models.content import ContentItem
    from umt.models.users import User


class Campaign(TimestampMixin, Base):
    """A campaign of one brand; its slug is unique within the brand (it appears in URLs)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        sa.UniqueConstraint("brand_id", "slug"),
        sa.CheckConstraint("budget >= 0", name="budget_non_negative"),
        sa.CheckConstraint(
            "starts_at IS NULL OR ends_at IS NULL OR ends_at >= starts_at", name="dates_ordered"
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    brand_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("brands.id", ondelete="CASCADE"), nullable=False, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    slug: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    status: Mapped[CampaignStatus] = mapped_column(
        campaign_status_type, nullable=False, server_default=CampaignStatus.DRAFT.value, index=True
    )
    objective: Mapped[str | None] = mapped_column(sa.Text)
    budget: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False, server_default="USD")
    starts_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: audience criteria: {"regions": ["DE", "AT"], "age": [25, 44], "interests": ["running"]}
    targeting: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)

    brand: Mapped[Brand] = relationship(back_populates="campaigns")
    owner: Mapped[User | None] = relationship(back_populates="owned_campaigns")
    content_items: Mapped[list[ContentItem]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", passive_deletes=True
    )
