"""``umt-migrations wait-for-schema``: the app gate an application's init container runs.

It waits until the database is at the head revision(s) of the scripts in this image, then
exits 0 so the application starts. A database at a revision these scripts do not know passes
too: it was migrated by a newer release (an expand/contract rollout where old pods still
start, or a rollback of the code only), and waiting would deadlock the rollout. A database at
an ancestor of head, or empty, or unreachable, waits, with one line each time what it waits
for changes; after ``--timeout`` it exits 4 naming both revisions.

The revision is read as ``alembic current`` reads it, through the project's ``env.py`` with
``dont_mutate`` (the version table may be renamed): no lock, no write, no Kubernetes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from .argtypes import positive_seconds, seconds

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from .project import Project

DEFAULT_TIMEOUT = 300.0
DEFAULT_INTERVAL = 2.0
#: Longest a single connection attempt may take, so an unreachable host cannot outlast the
#: timeout by much (drivers otherwise wait for the operating system's TCP timeout).
MAX_CONNECT_SECONDS = 10

EXIT_PASSED, EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 4

EXIT_CODES_HELP = """\
exit codes:
  0  the database is at this image's head(s), or at a revision this image does not know
     (a newer schema: expand/contract rollouts and rollbacks must not deadlock)
  1  unexpected failure (a broken env.py, a missing driver); the message says which
  2  invalid usage: no alembic.ini, an unparsable database URL
  4  timed out; the message names the database's revision and the expected head(s)
"""


@dataclass(frozen=True)
class Verdict:
    """Whether the application may start, and the line that says why (or what it waits for)."""

    passed: bool
    line: str


def _revisions(revs: Sequence[str]) -> str:
    return ",".join(revs) if revs else "base (empty)"


def judge(heads: Sequence[str], current: Sequence[str], known: Callable[[str], bool]) -> Verdict:
    """Decide from the scripts' ``heads``, the database's ``current`` revisions and ``known``
    (whether the scripts contain a revision id). Pure."""
    expected = f"head {_revisions(heads)}"
    unknown = [rev for rev in current if not known(rev)]
    if unknown:
        return Verdict(True, f"the database is at {_revisions(unknown)}, a revision this image's "
                       f"scripts do not know (a newer schema; this image's {expected}): "
                       "starting")
    if set(heads) <= set(current):
        return Verdict(True, f"the database is at this image's {expected}: starting")
    if not current:
        return Verdict(False, f"waiting: the database has no revision yet (empty); expected "
                       f"{expected}")
    return Verdict(False, f"waiting: the database is at {_revisions(current)}; expected {expected}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--interval", type=positive_seconds, default=DEFAULT_INTERVAL,
                        metavar="SECONDS",
                        help=f"between two reads of the revision (default {DEFAULT_INTERVAL:g})")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``umt-migrations wait-for-schema``: the exit code (see :data:`EXIT_CODES_HELP`)."""
    from .project import Project, ProjectError
    from .urls import InvalidURL

    out, err = out or sys.stdout, err or sys.stderr
    try:
        project = Project.locate(getattr(args, "config", None), getattr(args, "url", None))
    except (ProjectError, InvalidURL) as exc:
        print(f"error: {exc}", file=err, flush=True)
        return EXIT_USAGE
    _quiet_alembic()
    with project.running():
        return _wait(project, args.timeout, args.interval, out, err)


def _quiet_alembic() -> None:
    """Keep Alembic's per-connection INFO lines out of the log of every check: an ``env.py``
    that configures logging only when nobody did (UMT's does) then finds it done."""
    import logging

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def _wait(project: Project, timeout: float, interval: float, out: TextIO, err: TextIO) -> int:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(project.alembic_config())
    heads = tuple(sorted(script.get_heads()))
    deadline = time.monotonic() + timeout
    shown = None
    while True:
        verdict = _check(project, script, heads, deadline)
        if verdict.passed:
            print(verdict.line, file=out, flush=True)
            return EXIT_PASSED
        if verdict.line != shown:
            print(verdict.line, file=out, flush=True)
            shown = verdict.line
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = verdict.line.removeprefix("waiting: ")
            print(f"error: timed out after {timeout:g} s: {what}. Is the migration running, or "
                  "did it fail? (kubectl get schemamigrations; the hook Job's log)",
                  file=err, flush=True)
            return EXIT_TIMEOUT
        time.sleep(min(interval, remaining))


def _check(project: Project, script: ScriptDirectory, heads: tuple[str, ...],
           deadline: float) -> Verdict:
    import sqlalchemy as sa

    from .connectbounds import ConnectBounds, bounded_connections
    from .envrun import read_current
    from .masking import scrub
    from .urls import describe_target

    # A bounded attempt (connect timeout, keepalives), for env.py's own engine too.
    bounds = ConnectBounds(connect_timeout=min(MAX_CONNECT_SECONDS,
                                               max(1.0, deadline - time.monotonic())))
    try:  # through env.py, as ``alembic current`` reads it
        with bounded_connections(bounds):
            current = read_current(project, script)
    except sa.exc.DBAPIError as exc:
        detail = " ".join(str(exc.orig).split())[:300] or type(exc.orig).__name__
        detail = scrub(detail, project.url)
        return Verdict(False, f"waiting: cannot read the database at "
                       f"{describe_target(project.url)} ({detail}); expected head "
                       f"{_revisions(heads)}")
    return judge(heads, current, lambda rev: _known(script, rev))


def _known(script: ScriptDirectory, rev: str) -> bool:
    """Whether the scripts hold exactly this revision id (not merely a longer id it begins)."""
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        found = script.revision_map.get_revision(rev)
    except (RevisionError, CommandError):
        return False
    return found is not None and found.revision == rev
