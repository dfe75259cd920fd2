"""``umt-migrations`` (and ``python manage_migrations.py``): the command line.

Errors come out as one ``error: …`` line on stderr with the remedy and a non-zero exit, never a
traceback (set ``UMT_MIGRATIONS_DEBUG=1`` to see one), and never with a password in it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .argtypes import OneLineParser, bounded_seconds, count, seconds
from .review import cli as review_cli

log = logging.getLogger("umt_migrations")

DEBUG_ENV = "UMT_MIGRATIONS_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="database URL (default: $DATABASE_URL, else the project's sqlalchemy.url, else "
        "sqlite:///umt.db in this directory)",
    )
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="INI",
        help="the project's alembic.ini (default: $UMT_ALEMBIC_CONFIG, ./alembic.ini, UMT's)",
    )
    parser = OneLineParser(
        prog="umt-migrations",
        description="UMT database migrations: create, apply and inspect Alembic revisions.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common])

    p = add("create", "create a new revision file")
    p.add_argument("-m", "--message", required=True, help="what the revision does")
    p.add_argument("--autogenerate", action="store_true", help="derive operations from models")
    p = add("upgrade", "upgrade the database (default: to head)")
    p.add_argument("revision", nargs="?", default="head")
    p.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    p = add("downgrade", "downgrade the database to REVISION")
    p.add_argument("revision")
    p.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    p = add("history", "list revisions, newest first")
    p.add_argument("-v", "--verbose", action="store_true")
    p = add("current", "show the database's current revision")
    p.add_argument("-v", "--verbose", action="store_true")
    p = add("heads", "show the head revision(s) of the scripts")
    p.add_argument("-v", "--verbose", action="store_true")
    p = add("merge", "merge several heads into one revision")
    p.add_argument("-m", "--message", default=None)
    p = add("check", "fail when the models and the migrations disagree")
    review_cli.add_check_options(p)
    p = add("migrate", "move the database to a target revision, under a lock (what Jobs run)")
    p.add_argument("--to", required=True, dest="target", metavar="REV",
                   help="head, heads, base, <branch>@head or a revision id")
    p.add_argument("--allow-downgrade", action="store_true",
                   help="allow moving to an older revision")
    p.add_argument("--report", type=Path, default=None, metavar="FILE",
                   help="JSON report (default: $TERMINATION_MESSAGE_PATH, /dev/termination-log)")
    p.add_argument("--lock-timeout", type=seconds, default=300.0, metavar="S",
                   help="seconds to wait for another migration to finish (default 300)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and SQL; change nothing")
    _add_safety(p)
    p.add_argument("--plan-digest", default=None, metavar="sha256:HEX",
                   help="run only if the plan from the database's revision has this digest "
                        "(from `plan`); else exit 2, PlanChanged, nothing applied")
    review_cli.add_plan(sub, common)
    review_cli.add_lint(sub, common)
    _add_waiter_and_gate(sub, common)
    return parser


def _add_safety(p: argparse.ArgumentParser) -> None:
    """Bounds that keep a migration from stalling a busy database (README, "Busy databases")."""
    from .safety import (
        DEFAULT_CONNECT_TIMEOUT,
        DEFAULT_LOCK_RETRIES,
        DEFAULT_STEP_LOCK_TIMEOUT,
        MAX_CONNECT_SECONDS,
        MAX_LOCK_RETRIES,
        MAX_SECONDS,
    )

    p.add_argument("--step-lock-timeout", type=bounded_seconds(MAX_SECONDS, zero_means="off"),
                   default=DEFAULT_STEP_LOCK_TIMEOUT, metavar="S",
                   help="longest a revision's statement waits for a table lock before the "
                   f"revision is rolled back and retried (default {DEFAULT_STEP_LOCK_TIMEOUT:g}; "
                   "0: no limit)")
    p.add_argument("--lock-retries", type=count(MAX_LOCK_RETRIES), default=DEFAULT_LOCK_RETRIES,
                   metavar="N",
                   help="retries of a revision after a lock timeout or a deadlock, with "
                   f"jittered exponential back-off (default {DEFAULT_LOCK_RETRIES}: "
                   f"{DEFAULT_LOCK_RETRIES + 1} attempts)")
    p.add_argument("--statement-timeout", type=bounded_seconds(MAX_SECONDS, zero_means="off"),
                   default=0.0, metavar="S",
                   help="longest a single statement may run (default 0: no limit)")
    p.add_argument("--connect-timeout", type=bounded_seconds(MAX_CONNECT_SECONDS),
                   default=DEFAULT_CONNECT_TIMEOUT, metavar="S",
                   help=f"longest a connection attempt may take (default "
                   f"{DEFAULT_CONNECT_TIMEOUT:g})")


def _add_waiter_and_gate(sub: Any, common: argparse.ArgumentParser) -> None:
    """``apply`` (the waiter, Kubernetes) and ``wait-for-schema`` (the app gate, database)."""
    from . import apply, approve, gate, waiter  # light: lightkube and SQLAlchemy load only when run

    text = "server-side-apply a SchemaMigration and wait until it is Ready, Stalled or timed out"
    p = sub.add_parser("apply", help=text, description=text, epilog=waiter.EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    apply.add_arguments(p)
    text = "print the plan a SchemaMigration waits on (spec.review), then approve its digest"
    p = sub.add_parser("approve", help=text, description=text,
                       epilog=approve.EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    approve.add_arguments(p)
    text = "wait until the database is at this image's head (or a newer revision it does not know)"
    p = sub.add_parser("wait-for-schema", help=text, description=text, parents=[common],
                       epilog=gate.EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    gate.add_arguments(p)


def main(argv: Sequence[str] | None = None) -> int:
    from .masking import mask_log_records, masked_streams, secrets_of_urls

    args = build_parser().parse_args(argv)
    _configure_logging()
    mask_log_records()
    urls = () if args.command in ("apply", "approve") else (_given_url(args), _database_url(args))
    with secrets_of_urls(*urls), masked_streams(stdout=not getattr(args, "sql", False)):
        return _main(args)  # (SQL meant for a file, ``--sql``, is printed verbatim)


def _main(args: argparse.Namespace) -> int:
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        if os.environ.get(DEBUG_ENV):  # the traceback, through the masked stream
            import traceback

            traceback.print_exc()
            return 1
        print(f"error: {_describe(exc, _database_url(args))}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    name = args.command
    if name == "migrate":  # the Job's path: no alembic.command (autogenerate and friends)
        return _migrate(args)
    if name == "apply":
        from . import apply

        return apply.run(args)
    if name == "approve":
        from . import approve

        return approve.run(args)
    if name == "wait-for-schema":
        from . import gate

        return gate.run(args)
    from .connectbounds import bounded_connections

    with bounded_connections():  # a connect timeout and keepalives for env.py's engines too
        return _alembic_command(args)


def _alembic_command(args: argparse.Namespace) -> int:
    name = args.command
    if name == "plan":
        return review_cli.run_plan(args)
    if name == "lint":
        return review_cli.run_lint(args)
    if name == "check" and args.format == "json":
        return review_cli.run_check(args)
    from . import commands
    from .project import Project

    project = Project.locate(getattr(args, "config", None), getattr(args, "url", None))

    if name == "create":
        created = commands.create(project, args.message, args.autogenerate)
        if created is None:
            print("no changes detected in the models; no revision written")
        else:
            print(f"created {_relative(created)}")
            print("review it (names, types, data moves, downgrade) before committing")
    elif name == "upgrade":
        commands.upgrade(project, args.revision, sql=args.sql)
    elif name == "downgrade":
        commands.downgrade(project, args.revision, sql=args.sql)
    elif name in ("history", "current", "heads"):
        getattr(commands, name)(project, verbose=args.verbose)
    elif name == "merge":
        merged = commands.merge(project, args.message)
        print(f"created {_relative(merged)}" if merged else "nothing to merge: there is one head")
    elif name == "check":
        commands.check(project)
        print("models and migrations agree")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .errors import INVALID_SPEC
    from .project import Project, ProjectError
    from .report import Report, report_destination, write_report
    from .runner import MigrateRequest, exit_code, migrate
    from .safety import Safety
    from .urls import InvalidURL

    request = MigrateRequest(
        target=args.target,
        allow_downgrade=args.allow_downgrade,
        lock_timeout=args.lock_timeout,
        dry_run=args.dry_run,
        report_path=report_destination(args.report),
        safety=Safety(
            step_lock_timeout=args.step_lock_timeout or None,
            statement_timeout=args.statement_timeout or None,
            lock_retries=args.lock_retries,
            connect_timeout=args.connect_timeout,
        ),
        plan_digest=args.plan_digest,
    )
    try:
        project = Project.locate(getattr(args, "config", None), getattr(args, "url", None))
    except (ProjectError, InvalidURL) as exc:  # fixed only by changing the request: exit 2
        report = Report(ok=False, error={"reason": INVALID_SPEC, "message": str(exc)})
        write_report(report, request.report_path)
    else:
        report = migrate(project, request)
    if report.error:
        log.error("%s: %s", report.error["reason"], report.error["message"])
    if not request.dry_run:
        print(report.to_json())
    return int(exit_code(report))


def _given_url(args: argparse.Namespace) -> str | None:
    """The URL as the user wrote it (``--url``, else ``$DATABASE_URL``), if any."""
    return getattr(args, "url", None) or os.environ.get("DATABASE_URL")


def _database_url(args: argparse.Namespace) -> str | None:
    """The URL the command used, resolved as :meth:`Project.locate` does (None if it can't)."""
    from .project import find_config, resolve_url

    try:
        return resolve_url(getattr(args, "url", None), find_config(getattr(args, "config", None)))
    except Exception:  # noqa: BLE001 - the failure being described may be this very one
        return _given_url(args)


def _describe(exc: BaseException, url: str | None) -> str:
    """One line for any failure, with the remedy where one is known, password-free."""
    import sqlalchemy as sa
    from alembic.util import CommandError

    from .commands import explain
    from .errors import MigrationError
    from .masking import scrub
    from .project import ProjectError
    from .urls import InvalidURL, describe_target

    secret = url  # every reading of its credentials is hidden
    if isinstance(exc, (ProjectError, InvalidURL, MigrationError)):
        return scrub(str(exc), secret)
    if isinstance(exc, CommandError):
        return scrub(explain(exc), secret)
    if isinstance(exc, sa.exc.OperationalError):
        target = describe_target(url or "<unknown>")
        detail = " ".join(str(exc.orig).split())
        return scrub(f"cannot reach the database at {target}: {detail}", secret)
    if isinstance(exc, sa.exc.DBAPIError):
        return scrub(" ".join(str(exc.orig).split())[:500], secret)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(f"{type(exc).__name__}: {text}"[:500], secret)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _configure_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
