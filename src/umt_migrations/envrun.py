"""Running a project's own ``env.py``: the only way the runner touches a database's revisions.

Projects' ``env.py`` files differ (as published projects show): the URL is always
set in the config (some read only that), a connection is offered too (others prefer it), the
revision is read through ``env.py`` as ``alembic current`` does (version tables get renamed),
and whatever ``env.py`` leaves open on the offered connection is rolled back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationStep
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from . import graph
from .project import Project

log = logging.getLogger("umt_migrations.migrate")


def run_env(
    project: Project,
    script: ScriptDirectory,
    conn: sa.Connection,
    fn: Callable[..., Any],
    *,
    per_migration: bool = False,
    **options: Any,
) -> None:
    """Run the project's ``env.py`` once with ``fn`` as its migration function."""
    config = project.alembic_config(connection=conn, configure_logger=False)
    context = EnvironmentContext(config, script, fn=fn, **options)
    if per_migration:
        _commit_per_migration(context)
    try:
        with context:
            script.run_env()
    finally:
        if not conn.closed and not conn.invalidated and conn.in_transaction():
            conn.rollback()
        reenable_logging()


def read_heads(project: Project, script: ScriptDirectory, conn: sa.Connection) -> tuple[str, ...]:
    """The database's current heads, read through ``env.py`` exactly as ``alembic current``."""
    found: list[tuple[str, ...]] = []

    def capture(heads: tuple[str, ...], _context: Any) -> list[MigrationStep]:
        found.append(tuple(sorted(heads)))
        return []

    run_env(project, script, conn, capture, dont_mutate=True)
    return found[0] if found else ()


def read_current(
    project: Project, script: ScriptDirectory, **engine_options: Any
) -> tuple[str, ...]:
    """:func:`read_heads` through a connection of its own, closed before returning."""
    engine = sa.create_engine(project.url, poolclass=NullPool, **engine_options)
    try:
        with engine.connect() as conn:
            return read_heads(project, script, conn)
    finally:
        engine.dispose()


def _commit_per_migration(context: EnvironmentContext) -> None:
    """Commit each revision on its own unless the project's ``env.py`` says otherwise.

    ``configure()`` resets ``transaction_per_migration`` to its own default (False) whatever the
    caller set, so the default is supplied around it (on the instance, which is what Alembic's
    ``context`` module proxies); an ``env.py`` that passes the option explicitly keeps its
    choice, and the revision read back afterwards tells what stayed.
    """
    configure = context.configure

    def configure_per_migration(*args: Any, **kw: Any) -> None:
        kw.setdefault("transaction_per_migration", True)
        configure(*args, **kw)

    context.configure = configure_per_migration  # type: ignore[method-assign]


@contextmanager
def group_commit(conn: sa.Connection) -> Iterator[None]:
    """Per-revision commits without a disk flush each, then one durable flush at the end.

    On PostgreSQL each revision still commits atomically and visibly on its own; with
    ``synchronous_commit = off`` the server just doesn't wait for the WAL flush of each one
    (a server crash could only lose whole, consistent revisions, which the next run reapplies).
    The closing transaction takes an xid with ``synchronous_commit = on``, so its commit waits
    until all the WAL before it, every revision included, is on disk. Applies to the connection
    this runner hands to ``env.py``; projects that open their own keep their own settings.
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET synchronous_commit = off")
    conn.commit()
    try:
        yield
    finally:
        if not conn.closed and not conn.invalidated:
            try:
                if conn.in_transaction():
                    conn.rollback()
                conn.exec_driver_sql("SET synchronous_commit = on")
                conn.exec_driver_sql("SELECT txid_current()")
                conn.commit()
            except sa.exc.DBAPIError:
                log.warning("could not confirm the final WAL flush", exc_info=True)


def offline_sql(project: Project, script: ScriptDirectory, plan: graph.Plan, out: TextIO) -> None:
    """The SQL of ``plan`` as ``env.py``'s offline mode renders it (``alembic … --sql``)."""
    config = project.alembic_config(configure_logger=False)
    config.output_buffer = out
    start = plan.current[0] if len(plan.current) == 1 else None
    with EnvironmentContext(
        config,
        script,
        fn=lambda _heads, _ctx: list(plan.steps),
        as_sql=True,
        starting_rev=start,
        destination_rev=graph.format_heads(plan.target) or "base",
        output_buffer=out,
        transaction_per_migration=True,
    ):
        script.run_env()
    reenable_logging()


def reenable_logging() -> None:
    """An ``env.py`` calling ``fileConfig()`` disables loggers it doesn't name; not ours."""
    for name in ("umt_migrations", log.name):
        logging.getLogger(name).disabled = False
