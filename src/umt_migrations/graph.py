"""The revision graph, pure: resolve a target and decide how to reach it.

Nothing here touches a database. Given a project's :class:`ScriptDirectory`, the revisions
the database is at (its heads) and the requested target, :func:`plan_move` says whether the
move is an upgrade, a downgrade, nothing to do, or impossible, and lists the steps in the
order they will run.

Plain ``alembic upgrade <ancestor>`` silently does nothing; here a move to an ancestor is a
downgrade and is refused unless downgrades are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from alembic.runtime.migration import MigrationStep
from alembic.script import ScriptDirectory
from alembic.script.revision import MultipleHeads, Revision, RevisionError
from alembic.util import CommandError

from .errors import (
    DOWNGRADE_NOT_ALLOWED,
    INVALID_SPEC,
    MULTIPLE_HEADS,
    REVISION_NOT_FOUND,
    MigrationError,
)

Direction = Literal["upgrade", "downgrade", "none"]

#: Alembic's own grammar (``alembic/script/revision.py``), copied so that a change in a new
#: Alembic release shows up as a failing unit test instead of a silent difference:
#: a target is relative when this matches from its start (``+1``, ``-2``, ``head-1``,
#: ``ae10+2``, ``branch@+1``): meaningful only against a current revision, so a declarative
#: target never uses them ...
RELATIVE_DESTINATION = re.compile(r"(?:(.+?)@)?(\w+)?((?:\+|-)\d+)")
#: ... and a revision id may hold any character but these.
ILLEGAL_ID_CHARS = frozenset(["@", "-", "+", ":"])
_FORMS = "head, heads, base, <branch>@head or a revision id"
#: Alembic takes any unique prefix of a revision id, one character included (``2`` for
#: ``240cfb931a0a``); a partial id needs at least this many, as the docs and the CRD say, so a
#: stray digit cannot name a revision. Exact ids and branch labels of any length still work.
MIN_PARTIAL_ID = 4


@dataclass(frozen=True)
class Plan:
    """How to move a database from ``current`` to ``target``."""

    direction: Direction
    current: tuple[str, ...]  #: the database's heads before the move (empty: base)
    target: tuple[str, ...]  #: the resolved target heads (empty: base)
    steps: tuple[MigrationStep, ...]

    @property
    def revisions(self) -> list[str]:
        """Revision ids whose upgrade (or downgrade) runs, in order."""
        return [step_revision(step) for step in self.steps]


def step_revision(step: MigrationStep) -> str:
    """The revision id a step runs the upgrade or downgrade of."""
    return str(step.revision.revision)  # type: ignore[attr-defined]  # a RevisionStep


def format_heads(heads: Sequence[str]) -> str | None:
    """Heads as one string for reports and messages; None means base."""
    return ",".join(heads) if heads else None


def validate_target(target: str) -> str:
    """Refuse relative and malformed targets before looking anything up (Alembic's grammar).

    Accepted: ``head``, ``heads``, ``base``, ``<branch>@head``, ``<branch>@heads``,
    ``<branch>@<id>`` and any (partial) revision id Alembic allows: anything without ``@ - +
    :``, such as ``v3.0.0.c`` or ``0001_initial``. Whether it names a revision of the project
    is for :func:`resolve` to say.
    """
    if not target:
        raise MigrationError(INVALID_SPEC, "target revision is empty; name a revision or 'head'")
    if RELATIVE_DESTINATION.match(target):
        raise MigrationError(
            INVALID_SPEC,
            f"relative revision identifier '{target}' is not accepted: name the revision "
            f"({_FORMS})",
        )
    problem = _format_problem(target)
    if problem:
        raise MigrationError(
            INVALID_SPEC,
            f"'{target}' is not a revision identifier ({problem}): use {_FORMS}; a revision id "
            "may hold any character but @ - + :",
        )
    return target


def _format_problem(target: str) -> str | None:
    """What is wrong with a non-relative target, or None."""
    branch, at, symbol = target.partition("@")
    if not at:
        return _illegal_chars(target)
    if not branch or not symbol:
        return "'@' needs a branch before it and head or a revision after it"
    if ":" in branch:
        return "':' inside a branch label"
    if symbol == "base":
        return "<branch>@base would take only that branch down; name the revision to go to"
    return _illegal_chars(symbol)


def _illegal_chars(rev_id: str) -> str | None:
    illegal = sorted(ILLEGAL_ID_CHARS.intersection(rev_id))
    return " ".join(illegal) + " inside an id" if illegal else None


def resolve(script: ScriptDirectory, target: str) -> tuple[str, ...]:
    """Resolve ``head``, ``heads``, ``base``, ``<branch>@head`` or a (partial) id to revision ids.
    """
    target = validate_target(target)
    _refuse_short_prefix(script, target)
    try:
        revisions = script.revision_map.get_revisions(target)
    except MultipleHeads as exc:
        heads = ", ".join(sorted(script.get_heads()))
        raise MigrationError(
            MULTIPLE_HEADS,
            f"'{target}' is ambiguous: the scripts have several heads ({heads}); target "
            "'heads', '<branch>@head' or one revision id, or merge the heads",
        ) from exc
    except (RevisionError, CommandError) as exc:
        raise MigrationError(
            REVISION_NOT_FOUND,
            f"revision '{target}' is not in this project's scripts ({_first_line(exc)})",
        ) from exc
    return tuple(sorted(rev.revision for rev in revisions if isinstance(rev, Revision)))


def _refuse_short_prefix(script: ScriptDirectory, target: str) -> None:
    """A partial revision id shorter than :data:`MIN_PARTIAL_ID` is refused (exit 2)."""
    symbol = target.rpartition("@")[2]
    if symbol in ("head", "heads", "base") or len(symbol) >= MIN_PARTIAL_ID:
        return
    try:
        found = script.revision_map.get_revision(symbol)
    except (RevisionError, CommandError):
        return  # unknown or ambiguous: resolve() says which
    if found is not None and symbol != found.revision and symbol not in found.branch_labels:
        raise MigrationError(
            INVALID_SPEC,
            f"'{symbol}' is too short for a partial revision id: give at least "
            f"{MIN_PARTIAL_ID} characters of it, or the whole id (see `history`)",
        )


def ancestors(script: ScriptDirectory, heads: Iterable[str]) -> set[str]:
    """Every revision reachable downwards from ``heads``, the heads included."""
    seen: set[str] = set()
    todo = list(heads)
    while todo:
        rev_id = todo.pop()
        if rev_id in seen:
            continue
        seen.add(rev_id)
        revision = script.revision_map.get_revision(rev_id)
        if revision is not None:
            todo.extend(revision._all_down_revisions)
    return seen


def check_current(script: ScriptDirectory, current: Sequence[str]) -> tuple[str, ...]:
    """The database's heads, verified to exist in the scripts."""
    for rev_id in current:
        try:
            found = script.revision_map.get_revision(rev_id)
        except (RevisionError, CommandError):
            found = None
        if found is None:
            raise MigrationError(
                REVISION_NOT_FOUND,
                f"the database is at revision '{rev_id}', which this project's scripts do not "
                "contain: run with the release (image) that has it, e.g. the one that last "
                "migrated this database",
                revision=rev_id,
            )
    return tuple(sorted(current))


def plan_move(
    script: ScriptDirectory,
    current: Sequence[str],
    target: str,
    *,
    allow_downgrade: bool = False,
) -> Plan:
    """Decide the move from the database's ``current`` heads to ``target``."""
    wanted = resolve(script, target)
    heads = check_current(script, current)
    if set(wanted) <= set(heads) and (wanted or not heads):
        return Plan("none", heads, wanted, ())

    below_current = ancestors(script, heads) - set(heads)
    if all(rev in below_current for rev in wanted):
        if not allow_downgrade:
            raise MigrationError(
                DOWNGRADE_NOT_ALLOWED,
                f"moving from {format_heads(heads)} to {format_heads(wanted) or 'base'} is a "
                "downgrade; set allowDowngrade (--allow-downgrade) to run it",
            )
        destination = wanted[0] if len(wanted) == 1 else "base" if not wanted else None
        if destination is None:
            raise MigrationError(
                INVALID_SPEC, f"cannot downgrade to several revisions at once ({wanted})"
            )
        # Alembic annotates one head; iterate_revisions underneath takes the tuple of them.
        steps = script._downgrade_revs(destination, heads or None)  # type: ignore[arg-type]
        return Plan("downgrade", heads, wanted, tuple(steps))

    for rev in wanted:
        if rev in below_current:
            raise MigrationError(
                INVALID_SPEC,
                f"target {format_heads(wanted)} is partly behind and partly ahead of the "
                f"database ({format_heads(heads)}); move one branch at a time",
            )
        reachable = not heads or bool(ancestors(script, [rev]) & set(heads))
        if not reachable and target != "heads":
            raise MigrationError(
                INVALID_SPEC,
                f"revision {rev} is on another branch than the database's "
                f"{format_heads(heads)}: neither an upgrade nor a downgrade reaches it",
            )
    steps = script._upgrade_revs(wanted if len(wanted) > 1 else wanted[0], heads)  # type: ignore[arg-type]
    return Plan("upgrade", heads, wanted, tuple(steps))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
