"""The review commands of the command line: ``plan``, ``lint`` and ``check --format json``.

Only argparse at import time: the heavy modules (Alembic, sqlglot, squawk) load when a review
command runs, so ``migrate`` pays nothing for them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from .. import graph
    from ..project import Project
    from .plan import ReviewPlan

PLAN_EXIT_CODES = """exit codes:
  0  the plan is printed (whatever its findings say)
  1  transient: the database could not be reached to read its revision
  2  invalid request: unknown revision, downgrade without --allow-downgrade, ambiguous heads
  3  the project's env.py failed while rendering offline
"""
LINT_EXIT_CODES = """exit codes:
  0  no unaccepted finding at or above --fail-on (default: error)
  1  unaccepted findings at or above --fail-on: fix them, or accept them with a reason
     (lint_accept in the revision file, migrations/README.md)
  2  could not lint: unknown revision, bad --against ref, squawk missing, env.py failed
"""
CHECK_EXIT_CODES = """exit codes (--format json; the text form exits 1 when they disagree):
  0  the database matches the models
  1  transient: the database could not be reached
  2  not supported (env.py sets no target_metadata) or the database is not at head
  3  drift: the report lists what is extra, missing or modified
"""


def add_plan(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "show what `migrate --to REV` would run: each revision's SQL, findings, and a digest"
    p = sub.add_parser("plan", help=text, description=text, parents=[common],
                       epilog=PLAN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to", required=True, dest="target", metavar="REV",
                   help="head, heads, base, <branch>@head or a revision id (as migrate --to)")
    _add_from(p, "the database's revision (default: read it from the database, read-only); "
                 "with it no database is needed")
    p.add_argument("--allow-downgrade", action="store_true",
                   help="plan a move to an older revision (as migrate --allow-downgrade)")
    _add_format(p)
    p.add_argument("--dialect", default=None, metavar="NAME",
                   help="render SQL for this dialect (postgresql, mysql, mariadb, sqlite) "
                        "instead of the URL's")
    p.add_argument("--report", type=Path, default=None, metavar="FILE",
                   help="bounded JSON summary (digest, counts) (default: "
                        "$TERMINATION_MESSAGE_PATH, /dev/termination-log)")
    p.add_argument("--applied-hashes", type=Path, default=None, metavar="FILE",
                   help='JSON {"revision": "sha256:…"}: the contentHash each applied revision ran '
                        "with; a file that changed since is an error (revision-edited)")


def add_lint(sub: Any, common: argparse.ArgumentParser) -> None:
    text = "lint the revisions between two revisions (default: all of them), offline"
    p = sub.add_parser("lint", help=text, description=text, parents=[common],
                       epilog=LINT_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_from(p, "lint the revisions after this one (default: base, the whole history)")
    p.add_argument("--to", dest="target", default="heads", metavar="REV",
                   help="lint up to this revision (default: heads)")
    p.add_argument("--against", default=None, metavar="GIT_REF",
                   help="flag revision files changed since this git ref (e.g. origin/main)")
    p.add_argument("--dialect", default=None, metavar="NAME",
                   help="lint the SQL of this dialect (default: the URL's)")
    p.add_argument("--fail-on", choices=("error", "warning"), default="error",
                   help="lowest unaccepted severity that fails (default: error)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="list accepted findings too, with their reasons")
    _add_format(p)


def add_check_options(p: argparse.ArgumentParser) -> None:
    _add_format(p)
    p.add_argument("--report", type=Path, default=None, metavar="FILE",
                   help="with --format json: also write the report here (default: "
                        "$TERMINATION_MESSAGE_PATH, /dev/termination-log)")
    p.epilog = CHECK_EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def _add_from(p: argparse.ArgumentParser, help_: str) -> None:
    p.add_argument("--from", dest="source", default=None, metavar="REV", help=help_)


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people, json for programs (one line)")


def run_plan(args: argparse.Namespace) -> int:
    """``plan``: print the plan, write its summary; exit as documented above."""
    from ..errors import ExitCode
    from ..report import report_destination
    from .plan import dump, to_text

    destination = report_destination(args.report)
    try:
        review = _review(args, read_database=args.source is None)
    except _RefusedError as refused:
        print(f"error: {refused.message}", file=sys.stderr)
        _write(destination, {"ok": False, "error": {"reason": refused.reason,
                                                    "message": refused.message}})
        return refused.code
    _write(destination, review.summary())
    print(dump(review.to_json()) if args.format == "json" else to_text(review), end="")
    if args.format == "json":
        print()
    return int(ExitCode.OK)


def run_lint(args: argparse.Namespace) -> int:
    """``lint``: the plan from ``--from`` (base) to ``--to`` (heads), judged."""
    from .plan import describe, dump

    try:
        review = _review(args, read_database=False, against=args.against)
    except _RefusedError as refused:
        print(f"error: {refused.message}", file=sys.stderr)
        return 2
    failing = {"error"} if args.fail_on == "error" else {"error", "warning"}
    bad = [f for f in review.findings if not f.accepted and f.severity in failing]
    if args.format == "json":
        print(dump(review.to_json()))
    else:
        for step in review.steps:
            for finding in step.findings:
                if finding.accepted and not args.verbose:
                    continue
                print(f"{step.rendered.source.path.name}: {step.rendered.revision}: "
                      f"{describe(finding)}")
        total = review.counts()
        print(f"lint: {len(review.steps)} revision(s) on {review.dialect}: {total['error']} "
              f"error(s), {total['warning']} warning(s), {total['accepted']} accepted")
    return 1 if bad else 0


class _RefusedError(Exception):
    def __init__(self, reason: str, message: str, code: int) -> None:
        super().__init__(message)
        self.reason, self.message, self.code = reason, message, code


def _review(
    args: argparse.Namespace, *, read_database: bool, against: str | None = None
) -> ReviewPlan:
    """Locate the project, decide the move, and build its plan; failures are refused."""
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from ..errors import DATABASE_UNAVAILABLE, INVALID_SPEC, MIGRATION_FAILED, MigrationError
    from ..masking import scrub
    from ..project import Project, ProjectError
    from ..urls import InvalidURL, describe_target, password_of
    from . import plan
    from .render import dialect_project
    from .squawk import SquawkUnavailableError

    _quiet_alembic()
    url = getattr(args, "url", None)
    secret = password_of(url)
    try:
        project = Project.locate(getattr(args, "config", None), url)
        secret = password_of(project.url)
        with project.running():
            script = ScriptDirectory.from_config(project.alembic_config())
            move = _move(project, script, args, read_database)
            rendering_project = dialect_project(project, args.dialect)
            extra = _edited_since(against, script) if against else None
            review = plan.build(rendering_project, script, move, extra=extra)
            recorded = getattr(args, "applied_hashes", None)
            if recorded is not None:
                review.edited = plan.edited_since_applied(script, _read_hashes(recorded))
            return review
    except MigrationError as exc:
        raise _RefusedError(exc.reason, scrub(exc.message, secret), int(exc.exit_code)) from None
    except (ProjectError, InvalidURL, SquawkUnavailableError, _GitError) as exc:
        raise _RefusedError(INVALID_SPEC, scrub(str(exc), secret), 2) from None
    except sa.exc.DBAPIError as exc:
        target = describe_target(project.url)
        detail = " ".join(str(exc.orig).split())[:300]
        raise _RefusedError(DATABASE_UNAVAILABLE, scrub(
            f"cannot read the revision of the database at {target}: {detail}", secret), 1
        ) from None
    except CommandError as exc:
        raise _RefusedError(INVALID_SPEC, scrub(str(exc).splitlines()[0], secret), 2) from None
    except Exception as exc:  # noqa: BLE001 - env.py itself failed while rendering offline
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise _RefusedError(MIGRATION_FAILED, scrub(
            f"env.py failed while rendering offline: {type(exc).__name__}: {detail}", secret),
            3) from None


def _move(
    project: Project, script: ScriptDirectory, args: argparse.Namespace, read_database: bool
) -> graph.Plan:
    from .. import graph
    from ..envrun import read_current

    current = read_current(project, script) if read_database else parse_from(script, args.source)
    return graph.plan_move(
        script, current, args.target, allow_downgrade=getattr(args, "allow_downgrade", False)
    )


def parse_from(script: ScriptDirectory, source: str | None) -> tuple[str, ...]:
    """``--from``: ``base`` (or nothing), a revision id, or several heads joined by commas."""
    from .. import graph

    if source is None or source.strip() in ("", "base"):
        return ()
    heads: set[str] = set()
    for part in source.split(","):
        heads.update(graph.resolve(script, part.strip()))
    return tuple(sorted(heads))


class _GitError(Exception):
    """git, or a file the request names, cannot be read: an invalid request (exit 2)."""


def _edited_since(ref: str, script: ScriptDirectory) -> Any:
    from .against import GitError, edited_since

    try:
        return edited_since(ref, Path(script.dir))
    except GitError as exc:
        raise _GitError(str(exc)) from None


def _read_hashes(path: Path) -> dict[str, str]:
    """``--applied-hashes``: a JSON object of revision ids to content hashes."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _GitError(f"--applied-hashes {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise _GitError(f'--applied-hashes {path}: expected {{"revision": "sha256:…", …}}')
    return data


def _quiet_alembic() -> None:
    """Warnings only from env.py and Alembic: the plan is the output (stdout), not the steps.

    A root handler is in place before ``env.py`` runs, so an ``env.py`` that configures
    logging only when nobody did (UMT's) leaves it as it is.
    """
    import logging

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def _write(destination: Path | None, data: dict[str, Any]) -> None:
    from .plan import dump

    if destination is not None:
        destination.write_text(dump(data), encoding="utf-8")


def run_check(args: argparse.Namespace) -> int:
    """``check --format json``: the drift report; exit as :data:`CHECK_EXIT_CODES` says."""
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from ..masking import scrub
    from ..project import Project
    from ..report import report_destination
    from ..urls import describe_target, password_of
    from . import drift
    from .plan import dump

    _quiet_alembic()
    project = Project.locate(getattr(args, "config", None), getattr(args, "url", None))
    destination = report_destination(args.report)
    try:
        with project.running():
            found = drift.compare(project, ScriptDirectory.from_config(project.alembic_config()))
    except (drift.NotSupportedError, drift.NotAtHeadError) as exc:
        data = drift.not_supported_json(str(exc))
        if isinstance(exc, drift.NotAtHeadError):
            data["supported"] = True
            data["error"] = "NotAtHead"
        print(dump(data))
        _write(destination, data)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sa.exc.DBAPIError as exc:
        detail = " ".join(str(exc.orig).split())[:300]
        print(scrub(f"error: cannot reach the database at {describe_target(project.url)}: "
                    f"{detail}", password_of(project.url)), file=sys.stderr)
        return 1
    data = found.to_json()
    print(dump(data))
    _write(destination, data)
    return 3 if found.drifted else 0
