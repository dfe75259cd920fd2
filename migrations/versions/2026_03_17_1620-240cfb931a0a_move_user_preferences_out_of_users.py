"""Move users' legacy preference columns into user_preferences, then drop them.

Revision ID: 240cfb931a0a
Revises: 7b15a05d0cb1
Create Date: 2026-03-17 16:20:00

What: a data migration. For every user, ``users.timezone``, ``users.locale`` and
``users.email_opt_in`` are copied into a ``user_preferences`` row, then the three columns are
dropped from ``users``. NULL time zones and locales become the table defaults (``UTC``,
``en-US``), which is what the application already showed for them.

Why: since 3ab691d3a566 every service reads settings from ``user_preferences``; keeping the
old columns invites writes that nobody reads.

How, carefully:
- users are walked by primary key in batches of ``BATCH_SIZE`` (keyset pagination: each batch
  is ``id > last AND id <= upper``, ``upper`` being the highest id of the next
  ``BATCH_SIZE`` users), and each batch is one bounded ``INSERT ... SELECT`` that runs inside
  the database: no row travels through Python, no statement touches more than a batch, and
  the log shows progress;
- idempotent: a user who already has a ``user_preferences`` row (written by the new settings
  page since 3ab691d3a566) keeps it; re-running after a failure copies only what is missing.
  That matters on MariaDB and SQLite, where the column drop commits implicitly: a failure
  there leaves the copied rows behind while ``alembic_version`` still names 7b15a05d0cb1.
  (On PostgreSQL the whole revision is one transaction and commits or rolls back at once.);
- the columns are dropped through ``batch_alter_table`` so SQLite (which copies the table)
  works like PostgreSQL and MariaDB.

Downgrade: re-adds the three columns and copies the values back from ``user_preferences`` in
the same kind of batches (a bounded ``UPDATE`` each). ``user_preferences`` is left as it is;
3ab691d3a566's downgrade drops it. A user without a preferences row gets the column defaults.

Offline (``--sql``) there is no database to page through: the copy is emitted as one
unbounded statement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import context, op

# revision identifiers, used by Alembic.
revision: str = "240cfb931a0a"
down_revision: str | Sequence[str] | None = "7b15a05d0cb1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Findings of `umt-migrations lint` this revision accepts, and why (migrations/README.md).
lint_accept = {
    "ban-drop-column": (
        "timezone, locale and email_opt_in are copied into user_preferences by this same "
        "revision just before the drop (every user, idempotent); since 3ab691d3a566 every "
        "service reads and writes user_preferences and none reads these columns; downgrade() "
        "re-adds them and copies the values back"
    ),
    "schema-and-data": (
        "the contract step of expand/copy/contract (3ab691d3a566 expanded): the copy and the "
        "drop belong together, a drop without the copy before it would lose the values"
    ),
}

#: Users per statement: small enough to keep each statement's locks and undo log short.
BATCH_SIZE = 500

log = logging.getLogger("umt.migrations")

# Lightweight table stubs: the shape these tables have at this revision, whatever the models
# say later. Only the columns this migration reads or writes.
users = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("timezone", sa.String(length=64)),
    sa.column("locale", sa.String(length=16)),
    sa.column("email_opt_in", sa.Boolean()),
)
preferences = sa.table(
    "user_preferences",
    sa.column("user_id", sa.Integer()),
    sa.column("timezone", sa.String(length=64)),
    sa.column("locale", sa.String(length=16)),
    sa.column("email_opt_in", sa.Boolean()),
)


def _next_upper(bind: sa.Connection, last: int) -> int | None:
    """The highest user id among the next ``BATCH_SIZE`` users after ``last`` (None: done)."""
    batch = (
        sa.select(users.c.id)
        .where(users.c.id > last)
        .order_by(users.c.id)
        .limit(BATCH_SIZE)
        .subquery("batch")
    )
    return bind.execute(sa.select(sa.func.max(batch.c.id))).scalar()


#: Builds the statement for the users with ``lower < id <= upper`` (None, None: all users).
StatementFor = Callable[[int | None, int | None], sa.Executable]


def _run_in_batches(statement_for: StatementFor, what: str) -> None:
    """Run ``statement_for(last, upper)`` over consecutive id ranges until users run out."""
    if context.is_offline_mode():
        op.execute(statement_for(None, None))
        return
    bind = op.get_bind()
    last, batches, total = 0, 0, 0
    while (upper := _next_upper(bind, last)) is not None:
        rows = bind.execute(statement_for(last, upper)).rowcount
        batches += 1
        total += rows
        log.info("%s: batch %d (user ids %d..%d): %d rows", what, batches, last + 1, upper, rows)
        last = upper
    log.info("%s: done, %d rows in %d batches", what, total, batches)


def _in_range(lower: int | None, upper: int | None) -> list[sa.ColumnElement[bool]]:
    if lower is None or upper is None:
        return []
    return [users.c.id > lower, users.c.id <= upper]


def _copy_to_preferences(lower: int | None, upper: int | None) -> sa.Insert:
    has_row = sa.exists().where(preferences.c.user_id == users.c.id)
    rows = sa.select(
        users.c.id,
        sa.func.coalesce(users.c.timezone, "UTC"),
        sa.func.coalesce(users.c.locale, "en-US"),
        users.c.email_opt_in,
    ).where(*_in_range(lower, upper), ~has_row)
    return preferences.insert().from_select(
        ["user_id", "timezone", "locale", "email_opt_in"], rows
    )


def _copy_back_to_users(lower: int | None, upper: int | None) -> sa.Update:
    prefs = preferences.alias("p")

    def value_of(column: str) -> sa.ScalarSelect[object]:
        return sa.select(prefs.c[column]).where(prefs.c.user_id == users.c.id).scalar_subquery()

    return (
        users.update()
        .where(*_in_range(lower, upper), sa.exists().where(prefs.c.user_id == users.c.id))
        .values(
            timezone=value_of("timezone"),
            locale=value_of("locale"),
            email_opt_in=value_of("email_opt_in"),
        )
    )


def upgrade() -> None:
    _run_in_batches(_copy_to_preferences, "copy users' preferences to user_preferences")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("email_opt_in")
        batch_op.drop_column("locale")
        batch_op.drop_column("timezone")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("email_opt_in", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    _run_in_batches(_copy_back_to_users, "copy user_preferences back to users")
