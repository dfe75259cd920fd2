"""The day-to-day commands: thin wrappers over ``alembic.command`` with readable errors.

Each takes the :class:`Project` first, like Alembic's own commands take ``Config``. Errors
from Alembic's troubleshooting list become one line with the remedy (:func:`explain`).
"""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.operations.ops import MigrationScript
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from .project import Project

_RELATIVE = re.compile(r"[+-]\d+")

#: (pattern in Alembic's message, what it means, the remedy)
_KNOWN_ERRORS: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"Can't locate revision identified by '([^']*)'"),
        "revision '{0}' is not in migrations/versions",
        "check the id with `history`; if the database is at a revision from a newer release, "
        "run that release's code (or pull the missing revision file)",
    ),
    (
        re.compile(r"Target database is not up to date"),
        "the database is not at the latest revision, so autogenerate/check would compare "
        "against an old schema",
        "run `upgrade` first, then repeat the command",
    ),
    (
        re.compile(r"Relative revision identifiers? require current version|"
                   r"Relative revision \S+ didn't produce"),
        "a relative revision (like +1 or -1) needs the database to be at a known revision, "
        "and the steps must exist",
        "use an absolute revision id or `head` (see `history` and `current`)",
    ),
    (
        re.compile(r"Multiple head revisions are present"),
        "the migration history has several heads (parallel branches)",
        "run `merge` to join them into one head, or target `heads` / `<branch>@head`",
    ),
    (
        re.compile(r"is not a valid (up|down)grade target"),
        "that revision is not reachable in that direction from the database's revision",
        "see `current` and `history`; use `upgrade` for newer revisions, `downgrade` for older",
    ),
]


def explain(exc: CommandError) -> str:
    """One line: what went wrong and how to fix it."""
    text = str(exc).strip()
    for pattern, meaning, remedy in _KNOWN_ERRORS:
        match = pattern.search(text)
        if match:
            return f"{meaning.format(*match.groups())} ({_first_line(text)}). Fix: {remedy}."
    return _first_line(text)


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "unknown error"


def create(project: Project, message: str, autogenerate: bool = False) -> Path | None:
    """New revision file; with ``autogenerate`` the operations come from model changes.

    An autogenerate that finds no change in the models writes nothing and returns None
    (Alembic's cookbook, "Don't Generate Empty Migrations with Autogenerate"); without
    ``autogenerate`` the empty template is what was asked for.
    """
    if not message.strip():
        raise CommandError("--message must not be empty: it names the revision file")
    with project.running():
        config = project.alembic_config()
        hook = _drop_empty_autogenerate if autogenerate else None
        script = command.revision(config, message=message, autogenerate=autogenerate,
                                  process_revision_directives=hook)
        scripts = script if isinstance(script, list) else [script]
        if not scripts:
            return None
        return Path(scripts[0].path).absolute()  # type: ignore[union-attr]


def _drop_empty_autogenerate(context: object, revision: object,
                             directives: list[MigrationScript]) -> None:
    """A ``process_revision_directives`` hook: no operation in any upgrade, no revision."""
    if all(ops.is_empty() for script in directives for ops in script.upgrade_ops_list):
        directives[:] = []


def upgrade(project: Project, revision: str = "head", sql: bool = False) -> None:
    with project.running():
        if not sql:
            _require_current_for_relative(project, revision)
        command.upgrade(project.alembic_config(), revision, sql=sql)


def downgrade(project: Project, revision: str, sql: bool = False) -> None:
    with project.running():
        if not sql:
            _require_current_for_relative(project, revision)
        command.downgrade(project.alembic_config(), revision, sql=sql)


def _require_current_for_relative(project: Project, revision: str) -> None:
    """``+1``/``-1`` count from the database's revision, so an empty database can't use them."""
    if not _RELATIVE.fullmatch(revision.strip()):
        return
    from .envrun import read_current

    if not read_current(project, ScriptDirectory.from_config(project.alembic_config())):
        raise CommandError(
            f"Relative revision identifiers require current version: the database has no "
            f"revision yet, so '{revision}' counts from nothing"
        )


def history(project: Project, verbose: bool = False) -> None:
    with project.running():
        command.history(project.alembic_config(), verbose=verbose, indicate_current=False)


def current(project: Project, verbose: bool = False) -> None:
    with project.running():
        command.current(project.alembic_config(), verbose=verbose)


def heads(project: Project, verbose: bool = False) -> None:
    with project.running():
        command.heads(project.alembic_config(), verbose=verbose)


def merge(project: Project, message: str | None = None) -> Path | None:
    """Merge all heads into one revision; None when there is a single head already."""
    with project.running():
        config = project.alembic_config()
        heads_now = ScriptDirectory.from_config(config).get_heads()
        if len(heads_now) < 2:
            return None
        script = command.merge(config, revisions="heads", message=message or "merge heads")
        return Path(script.path).absolute() if script is not None else None


def check(project: Project) -> None:
    """Raise ``CommandError`` when models and migrations disagree."""
    with project.running():
        command.check(project.alembic_config())
