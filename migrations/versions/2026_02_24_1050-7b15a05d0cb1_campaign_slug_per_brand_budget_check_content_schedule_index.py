"""Campaign slug unique per brand, non-negative budgets, content schedule index.

Revision ID: 7b15a05d0cb1
Revises: 3ab691d3a566
Create Date: 2026-02-24 10:50:00

What:
- ``campaigns``: unique (``brand_id``, ``slug``) and CHECK ``budget >= 0``;
- ``content_items``: the single-column index on ``status`` is replaced by a composite index
  on (``status``, ``publish_at``).

Why: campaign URLs are ``/<brand>/<campaign-slug>`` and two campaigns of one brand with the
same slug made the landing page pick one at random; a CSV import wrote
negative budgets that broke the spend report. The scheduler polls "scheduled and due"
(``WHERE status = 'scheduled' AND publish_at <= now()``) every minute; the composite index
serves that query, and it also serves every lookup by status alone, so the old index goes.

The upgrade refuses to start while existing rows violate the new constraints (MariaDB and
SQLite cannot roll DDL back, so it checks before changing anything) and says which query
finds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = "7b15a05d0cb1"
down_revision: str | Sequence[str] | None = "3ab691d3a566"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUPLICATE_SLUGS = (
    "SELECT brand_id, slug FROM campaigns GROUP BY brand_id, slug HAVING COUNT(*) > 1"
)
NEGATIVE_BUDGETS = "SELECT id FROM campaigns WHERE budget < 0"


def _refuse_on_violations() -> None:
    if context.is_offline_mode():
        return  # a SQL script can't look at the data; the DBA runs the two queries first
    bind = op.get_bind()
    problems = []
    for query, what in (
        (DUPLICATE_SLUGS, "campaigns share a slug within a brand"),
        (NEGATIVE_BUDGETS, "campaigns have a negative budget"),
    ):
        count = len(bind.execute(sa.text(query)).fetchall())
        if count:
            problems.append(f"{count} {what} (find them with: {query})")
    if problems:
        raise RuntimeError(
            "cannot add the campaign constraints: " + "; ".join(problems)
            + ". Fix those rows, then run the upgrade again."
        )


def upgrade() -> None:
    _refuse_on_violations()
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.create_unique_constraint(
            op.f("uq_campaigns_brand_id_slug"), ["brand_id", "slug"]
        )
        batch_op.create_check_constraint(op.f("ck_campaigns_budget_non_negative"), "budget >= 0")
    with op.batch_alter_table("content_items") as batch_op:
        batch_op.create_index(
            op.f("ix_content_items_status_publish_at"), ["status", "publish_at"]
        )
        batch_op.drop_index(op.f("ix_content_items_status"))


def downgrade() -> None:
    with op.batch_alter_table("content_items") as batch_op:
        batch_op.create_index(op.f("ix_content_items_status"), ["status"])
        batch_op.drop_index(op.f("ix_content_items_status_publish_at"))
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.drop_constraint(op.f("ck_campaigns_budget_non_negative"), type_="check")
        batch_op.drop_constraint(op.f("uq_campaigns_brand_id_slug"), type_="unique")
