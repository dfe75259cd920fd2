"""``migrate --to REV``: the declarative move every Job runs.

Lock the database, read where it is (through the project's own ``env.py``), decide the move
from the revision graph, apply it one committed revision at a time, read back where the
database really ended, and write the report, all while holding the lock.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from alembic.runtime.migration import MigrationStep
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.pool import NullPool

from . import graph
from .envrun import group_commit, offline_sql, read_heads, run_env
from .errors import (
    DATABASE_UNAVAILABLE,
    EXIT_CODES,
    INTERRUPTED,
    INVALID_SPEC,
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


def migrate(project: Project, request: MigrateRequest, out: TextIO = sys.stdout) -> Report:
    """Move the project's database to ``request.target``; never raises, always reports."""
    started = time.monotonic()
    report = Report(ok=False, database=describe_target(project.url))
    if request.report_path is not None:  # relative to where we were started, not the workdir
        request = replace(request, report_path=request.report_path.absolute())
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
                    _locked_run(_Run(project, script, engine, request, report), started)
                    return report
            finally:
                engine.dispose()
        except MigrationError as exc:
            _fail(report, exc)
        except sa.exc.OperationalError as exc:
            _fail(report, _unavailable(project, exc))
        except CommandError as exc:  # the project itself is unusable (no scripts folder, ...)
            _fail(report, MigrationError(INVALID_SPEC, _first_lines(exc, project)))
        except Exception as exc:  # env.py broken before any step (dry run): report, not crash
            detail = _first_lines(exc, project)
            _fail(report, MigrationError(MIGRATION_FAILED, f"env.py failed: {detail}"))
    report.durationSeconds = time.monotonic() - started
    write_report(report, request.report_path)
    return report


def exit_code(report: Report) -> ExitCode:
    """The process exit code for a finished run."""
    if report.ok:
        return ExitCode.OK
    reason = (report.error or {}).get("reason", MIGRATION_FAILED)
    return EXIT_CODES.get(reason, ExitCode.FAILED)


@dataclass
class _Run:
    """One locked run: what it works with, and what happened, recorded from inside ``env.py``."""

    project: Project
    script: ScriptDirectory
    engine: sa.Engine
    request: MigrateRequest
    report: Report
    conn: sa.Connection | None = None
    current: tuple[str, ...] | None = None  #: the heads env.py read, before planning
    plan: graph.Plan | None = None
    done: list[str] = field(default_factory=list)
    running: str | None = None

    @property
    def connection(self) -> sa.Connection:
        """The locked connection if it still works, else a fresh one (after a cancel, say)."""
        conn = self.conn
        if conn is not None and not conn.closed and not conn.invalidated:
            try:
                if conn.in_transaction():
                    conn.rollback()
                return conn
            except sa.exc.DBAPIError:
                conn.close()
        self.conn = self.engine.connect()  # closed with the run (its lock died with the old one)
        return self.conn


def _locked_run(run: _Run, started: float) -> None:
    """Everything between taking the lock and writing the report, which happens under it."""
    with sigterm_guard():
        run.conn = _connect(run.project, run.engine)
        try:
            with migration_lock(run.conn, run.request.lock_timeout, on_wait=log.info):
                _run_under_lock(run)
                run.report.durationSeconds = time.monotonic() - started
                write_report(run.report, run.request.report_path)
        except (Interrupted, sa.exc.OperationalError) as exc:  # while waiting for the lock
            if was_interrupted():
                raise MigrationError(
                    INTERRUPTED, "interrupted by SIGTERM while waiting for the migration lock"
                ) from None
            raise _unavailable(run.project, exc) from None
        finally:
            run.conn.close()


def _run_under_lock(run: _Run) -> None:
    try:
        with group_commit(run.connection):
            _apply(run)
        _conclude(run)
        return
    except MigrationError as exc:
        _fail(run.report, exc)
    except Interrupted:
        _fail(run.report, MigrationError(INTERRUPTED, _interrupted_message(run)))
    except Exception as exc:  # a migration script or env.py failed
        _fail(run.report, _failure(run, exc))
    _record_partial(run)


def _apply(run: _Run) -> None:
    """One ``env.py`` run that reads the heads, plans, and applies the plan's steps."""

    def steps_for(heads: tuple[str, ...], _context: Any) -> Iterator[MigrationStep]:
        run.current = tuple(sorted(heads))
        run.plan = plan = graph.plan_move(
            run.script, heads, run.request.target, allow_downgrade=run.request.allow_downgrade
        )
        if plan.direction != "none":
            log.info(
                "%s %s -> %s: %d step(s)",
                plan.direction,
                graph.format_heads(plan.current) or "base",
                graph.format_heads(plan.target) or "base",
                len(plan.steps),
            )
        return _recording(plan, run)

    run_env(run.project, run.script, run.connection, steps_for, per_migration=True)


def _recording(plan: graph.Plan, run: _Run) -> Iterator[MigrationStep]:
    """Yield the plan's steps; Alembic asks for the next one only once the last committed."""
    for step in plan.steps:
        revision = graph.step_revision(step)
        run.running = revision
        began = time.monotonic()
        yield step
        run.done.append(revision)
        run.running = None
        doc = (step.revision.doc or "").strip().splitlines()  # type: ignore[attr-defined]
        log.info(
            "%s %s (%s) done in %.2f s",
            plan.direction,
            revision,
            doc[0][:80] if doc else "",
            time.monotonic() - began,
        )


def _describe_plan(run: _Run) -> graph.Plan | None:
    """Copy the plan into the report; None when the run was refused before planning."""
    report, plan = run.report, run.plan
    if plan is None:  # refused before any step: the database is where it was
        if run.current is not None:
            report.fromRevision = report.toRevision = graph.format_heads(run.current)
        return None
    report.direction = plan.direction
    report.fromRevision = graph.format_heads(plan.current)
    report.targetRevision = graph.format_heads(plan.target)
    return plan


def _conclude(run: _Run) -> None:
    """Fill the report of a run that raised nothing, from the revision read back."""
    plan, report = _describe_plan(run), run.report
    if plan is None:  # env.py never called run_migrations()
        raise MigrationError(
            MIGRATION_FAILED, "env.py did not run migrations (context.run_migrations not called)"
        )
    if plan.direction == "none":
        report.ok = True
        report.toRevision = report.fromRevision
        log.info("already at %s; nothing to do", report.toRevision or "base")
        return
    after = read_heads(run.project, run.script, run.connection)
    report.toRevision = graph.format_heads(after)
    report.applied = _committed(run.script, plan, run.done, after)
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


def _record_partial(run: _Run) -> None:
    """After a failure: say where the database really is and which steps stayed committed."""
    plan, report = _describe_plan(run), run.report
    if plan is None:
        return
    try:
        after = read_heads(run.project, run.script, run.connection)
    except Exception:  # the database went away too: say what we know
        log.warning("could not read the revision back after the failure", exc_info=True)
        report.applied = list(run.done)
        return
    report.toRevision = graph.format_heads(after)
    report.applied = _committed(run.script, plan, run.done, after)
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


def _unavailable(project: Project, exc: BaseException) -> MigrationError:
    detail = _first_lines(getattr(exc, "orig", None) or exc, project)
    return MigrationError(
        DATABASE_UNAVAILABLE,
        f"cannot reach the database at {describe_target(project.url)}: {detail}",
    )


def _failure(run: _Run, exc: BaseException) -> MigrationError:
    if was_interrupted():  # a cancelled query after SIGTERM surfaces as a driver error
        return MigrationError(INTERRUPTED, _interrupted_message(run))
    if isinstance(exc, sa.exc.OperationalError) and run.running is None and not run.done:
        return _unavailable(run.project, exc)
    where = f"revision {run.running}" if run.running else "env.py"
    detail = _first_lines(getattr(exc, "orig", None) or exc, run.project)
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
    print(
        f"-- plan: {plan.direction} {report.fromRevision or 'base'} -> "
        f"{report.targetRevision or 'base'}, {len(plan.steps)} step(s)",
        file=out,
    )
    for step in plan.steps:
        print(f"--   {plan.direction} {graph.step_revision(step)}", file=out)
    if plan.steps:
        offline_sql(project, script, plan, out)
