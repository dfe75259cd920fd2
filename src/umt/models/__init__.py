"""UMT database models. ``Base.metadata`` is the target of the Alembic migrations."""

from umt.models.base import NAMING_CONVENTION, Base, TimestampMixin
from umt.models.brands import Brand, Channel
from umt.models.campaigns import Campaign
from umt.models.content import ContentItem
from umt.models.enums import CampaignStatus, ChannelType, ContentStatus, ContentType
from umt.models.users import User, UserPreferences

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Brand",
    "Campaign",
    "CampaignStatus",
    "Channel",
    "ChannelType",
    "ContentItem",
    "ContentStatus",
    "ContentType",
    "TimestampMixin",
    "User",
    "UserPreferences",
]
