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
from .connectbounds import ConnectBounds, bounded_connections
from .envrun import group_commit, offline_sql, read_heads, run_env
from .errors import (
    DATABASE_UNAVAILABLE,
    EXIT_CODES,
    INTERRUPTED,
    INVALID_SPEC,
    LOCK_TIMEOUT,
    MIGRATION_FAILED,
    PLAN_CHANGED,
    STATEMENT_TIMEOUT,
    ExitCode,
    MigrationError,
)
from .interrupt import Interrupted, sigterm_guard, was_interrupted
from .locking import migration_lock
from .lockwatch import LockWatch
from .masking import scrub
from .project import Project
from .report import Report, write_report
from .safety import DEADLOCK, LOCK, STATEMENT, Safety, backoff, failure_kind
from .stepguard import StepGuard
from .urls import describe_target

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
    safety: Safety = field(default_factory=Safety)
    plan_digest: str | None = None  #: run only the plan with this digest (``plan``)


def migrate(project: Project, request: MigrateRequest, out: TextIO = sys.stdout) -> Report:
    """Move the project's database to ``request.target``; never raises, always reports."""
    started = time.monotonic()
    report = Report(ok=False, database=describe_target(project.url))
    report.safety = request.safety.describe()
    if request.report_path is not None:  # relative to where we were started, not the workdir
        request = replace(request, report_path=request.report_path.absolute())
    bounds = ConnectBounds(connect_timeout=request.safety.connect_timeout)
    with project.running(), bounded_connections(bounds):
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
        except Exception as exc:  # noqa: BLE001 - env.py broken before any step (dry run): report
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
    origin: graph.Plan | None = None  #: the first attempt's plan (what the run set out to do)
    guard: StepGuard | None = None
    approved: tuple[str, ...] | None = None  #: heads whose plan matched --plan-digest

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
    with sigterm_guard(on_stuck=lambda: _abandon(run, started)):
        try:
            run.conn = _connect(run.project, run.engine)
        except Interrupted:
            raise MigrationError(
                INTERRUPTED, "interrupted by SIGTERM while connecting to the database"
            ) from None
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


def _abandon(run: _Run, started: float) -> None:
    """SIGTERM while the driver is stuck in C (libpq connecting): report; the process ends."""
    where = (
        f"during revision {run.running}" if run.running
        else "while connecting to the database" if run.conn is None
        else "while the database driver was blocked"
    )
    _fail(run.report, MigrationError(
        INTERRUPTED, f"interrupted by SIGTERM {where}; the run will be retried"
    ))
    run.report.durationSeconds = time.monotonic() - started
    write_report(run.report, run.request.report_path)
    log.error("%s: %s", INTERRUPTED, run.report.error["message"])  # type: ignore[index]
    print(run.report.to_json(), flush=True)


def _run_under_lock(run: _Run) -> None:
    try:
        if run.request.plan_digest is not None:
            _check_plan_digest(run)
        with group_commit(run.connection):
            _apply(run)
        _conclude(run)
        return
    except MigrationError as exc:
        _fail(run.report, exc)
    except Interrupted:
        _fail(run.report, MigrationError(INTERRUPTED, _interrupted_message(run)))
    except Exception as exc:  # noqa: BLE001 - a migration script or env.py failed: reported
        _fail(run.report, _failure(run, exc))
    _record_partial(run)


def _apply(run: _Run) -> None:
    """Run ``env.py`` until the plan is applied, retrying a revision that timed out on a lock.

    A retry runs ``env.py`` again: it reads the heads again and plans from there, so revisions
    that committed are never repeated, and one that was rolled back runs whole.
    """
    safety = run.request.safety
    watch = LockWatch(run.engine.connect)
    run.guard = guard = StepGuard(safety, watch)
    failures = 0  # consecutive failed attempts of the revision now failing
    failing: str | None = None
    try:
        while True:
            run.report.attempts += 1
            try:
                _apply_once(run, guard)
                return
            except Exception as exc:
                kind = failure_kind(exc)
                step = guard.step
                if kind not in (LOCK, DEADLOCK) or was_interrupted() or step is None:
                    raise
                if step.changed(guard):
                    raise _not_retried(run, kind, exc) from exc
                failures = failures + 1 if step.revision == failing else 1
                failing = step.revision
                retry = _record_retry(run, kind, failures, exc)
                if failures > safety.lock_retries:
                    raise _out_of_attempts(run, kind, failures, retry) from exc
                delay = backoff(failures)
                retry["backoffSeconds"] = round(delay, 3)
                log.warning(
                    "revision %s: attempt %d of %d failed (%s); retrying in %.1f s",
                    step.revision, failures, safety.lock_retries + 1, retry["message"], delay,
                )
                run.running, guard.step = None, None
                time.sleep(delay)
    finally:
        guard.end()
        watch.close()
        run.report.declared = guard.declared


def _apply_once(run: _Run, guard: StepGuard) -> None:
    """One ``env.py`` run that reads the heads, plans, and applies the plan's steps."""

    def steps_for(heads: tuple[str, ...], context: Any) -> Iterator[MigrationStep]:
        first_attempt = run.origin is None  # a retry starts from where the last one ended
        if first_attempt and run.approved is not None and tuple(sorted(heads)) != run.approved:
            raise MigrationError(PLAN_CHANGED, "the database moved while the plan was checked")
        run.current = tuple(sorted(heads))
        run.plan = plan = graph.plan_move(
            run.script, heads, run.request.target, allow_downgrade=run.request.allow_downgrade
        )
        if run.origin is None:
            run.origin = plan
        if plan.direction != "none":
            log.info(
                "%s %s -> %s: %d step(s)",
                plan.direction,
                graph.format_heads(plan.current) or "base",
                graph.format_heads(plan.target) or "base",
                len(plan.steps),
            )
        return guard.wrap(_recording(plan, run), context)

    run_env(run.project, run.script, run.connection, steps_for, per_migration=True)


def _check_plan_digest(run: _Run) -> None:
    """Refuse (``PlanChanged``, nothing applied) unless what would run is the approved plan.

    Under the lock: read the revision, plan the move, render it offline and digest it as
    ``plan`` does. A move with nothing to do runs whatever the digest (nothing runs).
    """
    from .review.digest import digest_of_move  # Alembic's offline mode only: no linters

    heads = run.current = read_heads(run.project, run.script, run.connection)
    plan = graph.plan_move(
        run.script, heads, run.request.target, allow_downgrade=run.request.allow_downgrade
    )
    if plan.direction != "none":
        actual = digest_of_move(run.project, run.script, plan)
        if actual != run.request.plan_digest:
            raise MigrationError(
                PLAN_CHANGED,
                f"the plan changed since it was approved: {plan.direction} "
                f"{graph.format_heads(plan.current) or 'base'} -> "
                f"{graph.format_heads(plan.target) or 'base'} ({len(plan.steps)} step(s)) has "
                f"digest {actual}, not {run.request.plan_digest}; nothing was applied. Run "
                "`plan` again, review it, and approve its digest",
            )
    run.approved = tuple(sorted(heads))


def _recording(plan: graph.Plan, run: _Run) -> Iterator[MigrationStep]:
    """Yield the plan's steps; Alembic asks for the next one only once the last committed."""
    for step in plan.steps:
        revision = graph.step_revision(step)
        run.running = revision
        began = time.monotonic()
        yield step
        if revision not in run.done:  # a retry of a run-wide transaction repeats it
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


def _blocker(run: _Run) -> str | None:
    watch = run.guard.watch if run.guard else None
    return watch.blockers[0].describe() if watch and watch.blockers else None


def _record_retry(run: _Run, kind: str, failures: int, exc: BaseException) -> dict[str, Any]:
    """One failed attempt, as the log and the report's ``retries`` list say it."""
    guard = run.guard
    assert guard is not None
    assert guard.step is not None
    step, watch = guard.step, guard.watch
    what = "deadlock" if kind == DEADLOCK else "lock timeout"
    waited = time.monotonic() - watch.started
    blocker = _blocker(run)
    bound = step.bounds.lock_timeout
    limit = f" of {bound:g} s" if bound is not None and kind == LOCK else ""
    message = f"{what}{limit} after {waited:.1f} s"
    if blocker:
        message += f", waiting on {blocker}"
    elif kind == DEADLOCK:
        message += f": {_first_lines(getattr(exc, 'orig', None) or exc, run.project, 2)}"
    retry: dict[str, Any] = {
        "revision": step.revision,
        "attempt": failures,
        "reason": "Deadlock" if kind == DEADLOCK else LOCK_TIMEOUT,
        "waitedSeconds": round(waited, 3),
        "blocker": blocker,
    }
    run.report.retries.append(retry)
    return {**retry, "message": message}


def _out_of_attempts(
    run: _Run, kind: str, failures: int, retry: dict[str, Any]
) -> MigrationError:
    revision = retry["revision"]
    error = MigrationError(
        LOCK_TIMEOUT,
        f"revision {revision} could not get its locks in {failures} attempt(s) (last: "
        f"{retry['message']}); nothing of it stayed and the database is at the last committed "
        "revision; the Job will retry",
        revision=revision,
        extra={"attempts": str(failures),
               **({"blocker": retry["blocker"]} if retry["blocker"] else {})},
    )
    log.error("revision %s: attempt %d of %d failed (%s); giving up", revision, failures,
              run.request.safety.lock_retries + 1, retry["message"])
    return error


def _not_retried(run: _Run, kind: str, exc: BaseException) -> MigrationError:
    """A lock failure after the revision changed what a rollback cannot undo."""
    assert run.guard is not None
    assert run.guard.step is not None
    step = run.guard.step
    what = "a deadlock" if kind == DEADLOCK else "a lock timeout"
    why = (
        "after statements it ran in autocommit_block()"
        if step.outside_transaction
        else "after some of its statements had already committed (MySQL/MariaDB DDL is not "
        "transactional)"
    )
    blocker = _blocker(run)
    detail = _first_lines(getattr(exc, "orig", None) or exc, run.project, 2)
    return MigrationError(
        MIGRATION_FAILED,
        f"revision {step.revision} failed with {what} {why}, so it is not retried"
        + (f" (waiting on {blocker})" if blocker else "")
        + f": {detail}. Check what it left behind before running it again",
        revision=step.revision,
    )


def _describe_plan(run: _Run) -> graph.Plan | None:
    """Copy the plan into the report; None when the run was refused before planning."""
    report, plan = run.report, run.origin or run.plan
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
    step = run.guard.step if run.guard else None
    if step is not None and failure_kind(exc) == STATEMENT:
        limit = step.bounds.statement_timeout
        bound = f" of {limit:g} s" if limit else ""
        log.error("revision %s exceeded the statement timeout%s", step.revision, bound)
        return MigrationError(
            STATEMENT_TIMEOUT,
            f"revision {step.revision} exceeded the statement timeout{bound} and was stopped"
            + (" (its completed statements stay: MySQL/MariaDB DDL is not transactional)"
               if step.changed(run.guard) else " and rolled back")  # type: ignore[arg-type]
            + "; raise --statement-timeout or declare statement_timeout in the revision",
            revision=step.revision,
        )
    if (
        step is not None
        and isinstance(exc, sa.exc.DBAPIError)
        and exc.connection_invalidated
        and not step.changed(run.guard)  # type: ignore[arg-type]
    ):  # a cut network or a server that went away mid-revision: nothing of it stayed
        detail = _first_lines(exc.orig or exc, run.project, 2)
        return MigrationError(
            DATABASE_UNAVAILABLE,
            f"lost the connection to {describe_target(run.project.url)} during revision "
            f"{step.revision}, which was rolled back: {detail}; the Job will retry",
            revision=step.revision,
        )
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
    report.error.update(exc.extra)


def _first_lines(exc: BaseException, project: Project, lines: int = 3) -> str:
    text = " ".join(str(exc).strip().splitlines()[:lines]) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}", project.url)


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
