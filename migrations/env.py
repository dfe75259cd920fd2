"""Alembic environment of the UMT database.

Contract relied on by the umt-migrations CLI, the migration Job and the tests:

- ``target_metadata`` is ``umt.models.Base.metadata`` (the installed package, no sys.path games);
- ``config.attributes["connection"]`` may hold a Connection or an Engine, and the caller owns
  what it passes. A Connection is used as is: this file never opens a second connection, never
  commits and never closes it (the caller may hold an advisory lock on it). An Engine (what
  pytest-alembic passes) lends a connection that this file opens and closes, leaving the engine
  itself to the caller;
- otherwise the URL is ``sqlalchemy.url`` from the Config, else ``DATABASE_URL``, else
  ``sqlite:///umt.db``, normalised so ``postgresql://`` and ``mysql://`` use the installed drivers;
- each revision runs in its own transaction (``transaction_per_migration``) so a failure leaves
  the database at the last revision that committed; ``on_version_apply`` is left to callers;
- the URL is never logged or printed.
"""

from __future__ import annotations

import logging
import os
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context

from umt.models import Base
from umt_migrations.urls import normalize_url

DEFAULT_URL = "sqlite:///umt.db"

config = context.config
target_metadata = Base.metadata

# Configure logging from alembic.ini only when nobody did it before us (plain `alembic`):
# the CLI, the Job runner and pytest set up their own handlers, which must survive.
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate: Config, then ``DATABASE_URL``, then the local SQLite file."""
    raw = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or DEFAULT_URL
    return normalize_url(raw)


CONFIGURE_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "render_as_batch": True,  # SQLite can only add/drop columns and constraints by copying
    "transaction_per_migration": True,
}


def run_migrations_offline() -> None:
    """``--sql``: emit the SQL script for the URL's dialect without connecting."""
    context.configure(
        url=database_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **CONFIGURE_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the caller's Connection or Engine, else through an engine of our own."""
    given = config.attributes.get("connection")
    if isinstance(given, sa.Connection):
        _run_with(given)
        return
    if given is not None and not isinstance(given, sa.Engine):
        raise TypeError(
            'config.attributes["connection"] must be a SQLAlchemy Connection or Engine, '
            f"not {type(given).__name__}"
        )
    engine = given or sa.create_engine(database_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as own_connection:
            _run_with(own_connection)
    finally:
        if engine is not given:
            engine.dispose()


def _run_with(connection: sa.Connection) -> None:
    # compare_type=True needs no per-backend exception today: `check` is clean at head on
    # PostgreSQL, MariaDB and SQLite (tests/test_models_revisions.py). If a backend ever
    # reports a reflection-only difference, pass a targeted callable here and say why.
    context.configure(connection=connection, compare_type=True, **CONFIGURE_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
