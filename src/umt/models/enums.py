"""Enumerations stored in the database, and the column types that store them.

Values (not member names) are stored, lower case, so SQL written by hand reads naturally.
On PostgreSQL each is a native ``ENUM`` type named below; MariaDB uses an inline ``ENUM``;
SQLite stores a ``VARCHAR``.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class ChannelType(enum.StrEnum):
    EMAIL = "email"
    SOCIAL = "social"
    SEARCH = "search"
    DISPLAY = "display"
    WEB = "web"
    SMS = "sms"


class ContentType(enum.StrEnum):
    BLOG_POST = "blog_post"
    SOCIAL_POST = "social_post"
    EMAIL = "email"
    AD = "ad"
    LANDING_PAGE = "landing_page"
    VIDEO = "video"


class ContentStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    PUBLISHED = "published"
    ARCHIVED = "archived"


def _enum_type(cls: type[enum.Enum], name: str) -> sa.Enum:
    return sa.Enum(
        cls,
        name=name,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


campaign_status_type = _enum_type(CampaignStatus, "campaign_status")
channel_type_type = _enum_type(ChannelType, "channel_type")
content_type_type = _enum_type(ContentType, "content_type")
content_status_type = _enum_type(ContentStatus, "content_status")
