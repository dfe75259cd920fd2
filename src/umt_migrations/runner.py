"""``migrate --to REV``: the declarative move every Job runs.

Lock the database, read where it is (through the project's own ``env.py``), decide the move
from the revision graph, apply it one committed revision at a time, read back where the
database really ended, and write the report, all while holding the lock.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationStep
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from . import graph
from .errors import (
    DATABASE_UNAVAILABLE,
    INTERRUPTED,
    MIGRATION_FAILED,
    ExitCode,
    MigrationError,
)
from .interrupt import Interrupted, sigterm_guard, was_interrupted
from .locking import migration_lock
from .project import Project
from .report import Report, write_report
from .urls import describe_target, password_of, scrub

log = logging.getLogger("umt_migrations.migrate")

MAX_ERROR_CHARS = 2000


@dataclass
class MigrateRequest:
    """What the caller asked for (the ``migrate`` command line)."""

    target: str
    allow_downgrade: bool = False
    lock_timeout: float = 300.0
    dry_run: bool = False
    report_path: Path | None = None


@dataclass
class _Run:
    """What happened during one ``env.py`` run, recorded from inside it."""

    current: tuple[str, ...] | None = None  #: the heads env.py read, before planning
    plan: graph.Plan | None = None
    done: list[str] = field(default_factory=list)
    running: str | None = None


def migrate(project: Project, request: MigrateRequest, out: TextIO = sys.stdout) -> Report:
    """Move the project's database to ``request.target``; never raises, always reports."""
    started = time.monotonic()
    report = Report(ok=False, database=describe_target(project.url))
    with project.running():
        try:
            script = ScriptDirectory.from_config(project.alembic_config())
            # bad targets fail before any connection
            report.targetRevision = graph.format_heads(graph.resolve(script, request.target))
            engine = sa.create_engine(project.url, poolclass=NullPool)
            try:
                if request.dry_run:
                    _dry_run(project, script, engine, request, report, out)
                else:
                    _locked_run(project, script, engine, request, report, started)
                    return report
            finally:
                engine.dispose()
        except MigrationError as exc:
            _fail(report, exc)
        except sa.exc.OperationalError as exc:
            _fail(report, _unavailable(project, exc))
    report.durationSeconds = time.monotonic() - started
    write_report(report, request.report_path)
    return report


def exit_code(report: Report) -> ExitCode:
    """The process exit code for a finished run."""
    if report.ok:
        return ExitCode.OK
    reason = (report.error or {}).get("reason", MIGRATION_FAILED)
    return MigrationError(reason, "").exit_code


def _locked_run(
    project: Project,
    script: ScriptDirectory,
    engine: sa.Engine,
    request: MigrateRequest,
    report: Report,
    started: float,
) -> None:
    """Everything between taking the lock and writing the report, which happens under it."""
    with sigterm_guard(engine.dialect.name):
        conn = _connect(project, engine)  # after the guard: psycopg2 must wait in Python
        try:
            with migration_lock(conn, request.lock_timeout, on_wait=log.info):
                _run_under_lock(project, script, engine, conn, request, report)
                report.durationSeconds = time.monotonic() - started
                write_report(report, request.report_path)
        except (Interrupted, sa.exc.OperationalError) as exc:  # while waiting for the lock
            if was_interrupted():
                raise MigrationError(
                    INTERRUPTED, "interrupted by SIGTERM while waiting for the migration lock"
                ) from None
            raise _unavailable(project, exc) from None
        finally:
            conn.close()


def _run_under_lock(
    project: Project,
    script: ScriptDirectory,
    engine: sa.Engine,
    conn: sa.Connection,
    request: MigrateRequest,
    report: Report,
) -> None:
    run = _Run()
    try:
        with _group_commit(conn):
            _apply(project, script, conn, request, run)
        _conclude(project, script, engine, conn, run, report)
        return
    except MigrationError as exc:
        _fail(report, exc)
    except Interrupted:
        _fail(report, MigrationError(INTERRUPTED, _interrupted_message(run)))
    except Exception as exc:  # a migration script or env.py failed
        _fail(report, _failure(project, run, exc))
    _record_partial(project, script, engine, conn, run, report)


def _apply(
    project: Project,
    script: ScriptDirectory,
    conn: sa.Connection,
    request: MigrateRequest,
    run: _Run,
) -> None:
    """One ``env.py`` run that reads the heads, plans, and applies the plan's steps."""

    def steps_for(heads: tuple[str, ...], _context: Any) -> Iterator[MigrationStep]:
        run.current = tuple(sorted(heads))
        run.plan = graph.plan_move(
            script, heads, request.target, allow_downgrade=request.allow_downgrade
        )
        if run.plan.direction != "none":
            log.info(
                "%s %s -> %s: %d step(s)",
                run.plan.direction,
                graph.format_heads(run.plan.current) or "base",
                graph.format_heads(run.plan.target) or "base",
                len(run.plan.steps),
            )
        return _recording(run.plan, run)

    _run_env(project, script, conn, steps_for, per_migration=True)


def _recording(plan: graph.Plan, run: _Run) -> Iterator[MigrationStep]:
    """Yield the plan's steps; Alembic asks for the next one only once the last committed."""
    for step in plan.steps:
        revision = graph.step_revision(step)
        run.running = revision
        began = time.monotonic()
        yield step
        run.done.append(revision)
        run.running = None
        log.info(
            "%s %s (%s) done in %.2f s",
            plan.direction,
            revision,
            (step.revision.doc or "").strip().splitlines()[0][:80] if step.revision.doc else "",
            time.monotonic() - began,
        )


def read_heads(project: Project, script: ScriptDirectory, conn: sa.Connection) -> tuple[str, ...]:
    """The database's current heads, read through ``env.py`` exactly as ``alembic current``."""
    found: list[tuple[str, ...]] = []

    def capture(heads: tuple[str, ...], _context: Any) -> list[MigrationStep]:
        found.append(tuple(sorted(heads)))
        return []

    _run_env(project, script, conn, capture, dont_mutate=True)
    return found[0] if found else ()


def _run_env(
    project: Project,
    script: ScriptDirectory,
    conn: sa.Connection,
    fn: Callable[..., Any],
    *,
    per_migration: bool = False,
    **options: Any,
) -> None:
    """Run the project's ``env.py`` once with ``fn`` as its migration function.

    The URL is always set (some ``env.py`` files read only that) and the connection is offered
    too (others prefer it). Whatever ``env.py`` leaves open on it is rolled back afterwards,
    as closing its own connection would.
    """
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
        _reenable_logging()


@contextmanager
def _group_commit(conn: sa.Connection) -> Iterator[None]:
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


def _conclude(
    project: Project,
    script: ScriptDirectory,
    engine: sa.Engine,
    conn: sa.Connection,
    run: _Run,
    report: Report,
) -> None:
    """Fill the report of a run that raised nothing, from the revision read back."""
    plan = run.plan
    if plan is None:  # env.py never called run_migrations()
        raise MigrationError(
            MIGRATION_FAILED, "env.py did not run migrations (context.run_migrations not called)"
        )
    report.direction = plan.direction
    report.fromRevision = graph.format_heads(plan.current)
    report.targetRevision = graph.format_heads(plan.target)
    if plan.direction == "none":
        report.ok = True
        report.toRevision = report.fromRevision
        log.info("already at %s; nothing to do", report.toRevision or "base")
        return
    after = read_heads(project, script, _usable(conn, engine))
    report.toRevision = graph.format_heads(after)
    report.applied = _committed(script, plan, run.done, after)
    if not set(plan.target) <= set(after) or (not plan.target and after):
        raise MigrationError(
            MIGRATION_FAILED,
            f"the scripts ran but the database reports {report.toRevision or 'base'}, not "
            f"{report.targetRevision or 'base'}; check the project's env.py",
        )
    report.ok = True
    log.info(
        "migrated %s -> %s: %d step(s)",
        report.fromRevision or "base",
        report.toRevision or "base",
        len(report.applied),
    )


def _record_partial(
    project: Project,
    script: ScriptDirectory,
    engine: sa.Engine,
    conn: sa.Connection,
    run: _Run,
    report: Report,
) -> None:
    """After a failure: say where the database really is and which steps stayed committed."""
    plan = run.plan
    if plan is None:  # refused before any step: the database is where it was
        if run.current is not None:
            report.fromRevision = report.toRevision = graph.format_heads(run.current)
        return
    report.direction = plan.direction
    report.fromRevision = graph.format_heads(plan.current)
    report.targetRevision = graph.format_heads(plan.target)
    try:
        after = read_heads(project, script, _usable(conn, engine))
    except Exception:  # the database went away too: say what we know
        log.warning("could not read the revision back after the failure", exc_info=True)
        report.applied = list(run.done)
        return
    report.toRevision = graph.format_heads(after)
    report.applied = _committed(script, plan, run.done, after)
    log.info("database left at %s", report.toRevision or "base")


def _committed(
    script: ScriptDirectory, plan: graph.Plan, done: list[str], after: tuple[str, ...]
) -> list[str]:
    """Steps that really stayed applied: those consistent with the revision read back."""
    below_after = graph.ancestors(script, after)
    if plan.direction == "upgrade":
        return [rev for rev in done if rev in below_after]
    return [rev for rev in done if rev not in below_after]


def _connect(project: Project, engine: sa.Engine) -> sa.Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise _unavailable(project, exc) from None


def _usable(conn: sa.Connection, engine: sa.Engine) -> sa.Connection:
    """``conn`` if it still works, else a fresh connection (after a cancelled query, say)."""
    if not conn.closed and not conn.invalidated:
        try:
            if conn.in_transaction():
                conn.rollback()
            return conn
        except sa.exc.DBAPIError:
            pass
    return engine.connect()


def _unavailable(project: Project, exc: BaseException) -> MigrationError:
    detail = _first_lines(getattr(exc, "orig", None) or exc, project)
    return MigrationError(
        DATABASE_UNAVAILABLE,
        f"cannot reach the database at {describe_target(project.url)}: {detail}",
    )


def _failure(project: Project, run: _Run, exc: BaseException) -> MigrationError:
    if was_interrupted():  # a cancelled query after SIGTERM surfaces as a driver error
        return MigrationError(INTERRUPTED, _interrupted_message(run))
    if isinstance(exc, sa.exc.OperationalError) and run.running is None and not run.done:
        return _unavailable(project, exc)
    where = f"revision {run.running}" if run.running else "env.py"
    detail = _first_lines(getattr(exc, "orig", None) or exc, project)
    log.error("%s failed: %s", where, detail)
    return MigrationError(MIGRATION_FAILED, f"{where} failed: {detail}", revision=run.running)


def _interrupted_message(run: _Run) -> str:
    during = f" during revision {run.running} (rolled back)" if run.running else ""
    return f"interrupted by SIGTERM{during}; the run will be retried"


def _fail(report: Report, exc: MigrationError) -> None:
    report.ok = False
    report.error = {"reason": exc.reason, "message": exc.message[:MAX_ERROR_CHARS]}
    if exc.revision:
        report.error["revision"] = exc.revision


def _first_lines(exc: BaseException, project: Project, lines: int = 3) -> str:
    text = " ".join(str(exc).strip().splitlines()[:lines]) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}", password_of(project.url))


def _reenable_logging() -> None:
    """An ``env.py`` calling ``fileConfig()`` disables loggers it doesn't name; not ours."""
    for name in ("umt_migrations", log.name):
        logging.getLogger(name).disabled = False


def _dry_run(
    project: Project,
    script: ScriptDirectory,
    engine: sa.Engine,
    request: MigrateRequest,
    report: Report,
    out: TextIO,
) -> None:
    """Print the plan and the SQL Alembic would emit; touch nothing."""
    conn = _connect(project, engine)
    try:
        heads = read_heads(project, script, conn)
    finally:
        conn.close()
    plan = graph.plan_move(script, heads, request.target, allow_downgrade=request.allow_downgrade)
    report.ok, report.dryRun = True, True
    report.direction = plan.direction
    report.fromRevision = report.toRevision = graph.format_heads(plan.current)
    report.targetRevision = graph.format_heads(plan.target)
    report.applied = []
    print(
        f"-- plan: {plan.direction} {report.fromRevision or 'base'} -> "
        f"{report.targetRevision or 'base'}, {len(plan.steps)} step(s)",
        file=out,
    )
    for step in plan.steps:
        print(f"--   {plan.direction} {graph.step_revision(step)}", file=out)
    if plan.steps:
        _offline_sql(project, script, plan, out)


def _offline_sql(project: Project, script: ScriptDirectory, plan: graph.Plan, out: TextIO) -> None:
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
    _reenable_logging()
