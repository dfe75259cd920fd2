"""Revision targets, accepted or refused: one table for the runner, the operator and the CRD.

``migrate --to`` (``umt_migrations.graph.validate_target``), the operator's spec check
(``umt_operator.spec.revision_problem``) and the CRD's CEL rules on ``spec.targetRevision`` are
three implementations of one rule; every test of each of them reads the cases from here, so
they cannot drift apart.

The rule is Alembic's own (``alembic/script/revision.py``): a revision id is any string without
``@``, ``-``, ``+`` or ``:`` (``_revision_illegal_chars``); ``head``, ``heads``, ``base`` and
``<branch>@<symbol or id>`` are symbols; and a target matching ``_relative_destination``
(``[<branch>@][<word>]+N`` / ``-N``, matched from the start) is relative. Relative targets
are refused, since a declarative target must not move with the database. ``<branch>@base`` is
refused too, although Alembic takes it: it means "downgrade that branch only", which
``migrate`` does not do (it would take the whole database to base).

Whether a target that passes names a revision of the project is decided later, by the
revision map (``RevisionNotFound``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["accepted", "relative", "malformed"]


@dataclass(frozen=True)
class TargetCase:
    target: str
    verdict: Verdict
    why: str

    def __str__(self) -> str:  # readable test ids
        return repr(self.target)


CASES: tuple[TargetCase, ...] = (
    # symbols
    TargetCase("head", "accepted", "the newest revision"),
    TargetCase("heads", "accepted", "every branch head"),
    TargetCase("base", "accepted", "an empty schema"),
    TargetCase("feature@head", "accepted", "a branch's head"),
    TargetCase("feature@heads", "accepted", "the heads of one branch"),
    TargetCase("feature@3f2a9c1e7b42", "accepted", "a revision checked to be on a branch"),
    TargetCase("my-feature@head", "accepted", "branch labels may hold '-'"),
    TargetCase("release.2@head", "accepted", "branch labels may hold '.'"),
    # revision ids as real projects write them
    TargetCase("3f2a9c1e7b42", "accepted", "Alembic's generated id"),
    TargetCase("3f2a", "accepted", "a partial id (Alembic matches 4+ characters)"),
    TargetCase("001", "accepted", "a short numeric id"),
    TargetCase("1234abcd", "accepted", "digits first, not a relative step"),
    TargetCase("0001_initial", "accepted", "numbered ids"),
    TargetCase("v3.0.0.c", "accepted", "dotted version ids"),
    TargetCase("2024_01_05_add_users", "accepted", "dated ids"),
    TargetCase("Rev_With_CAPS", "accepted", "upper case"),
    TargetCase("xyz!", "accepted", "any character but @ - + : is allowed"),
    TargetCase("a b", "accepted", "Alembic does not forbid spaces"),
    TargetCase("révision", "accepted", "nor non-ASCII letters"),
    # relative forms: refused
    TargetCase("+1", "relative", "one step up from the current revision"),
    TargetCase("-1", "relative", "one step down"),
    TargetCase("-2", "relative", "two steps down"),
    TargetCase("head-1", "relative", "relative to head"),
    TargetCase("ae10+2", "relative", "relative to a revision"),
    TargetCase("abc+2", "relative", "relative to a revision"),
    TargetCase("1-2", "relative", "Alembic reads it as 1 minus 2"),
    TargetCase("feature@+1", "relative", "relative on a branch"),
    TargetCase("feature@-1", "relative", "relative on a branch"),
    TargetCase("feature@head-1", "relative", "relative to a branch head"),
    TargetCase("release-2@head", "relative", "Alembic reads 'release-2' as a relative step"),
    TargetCase("ae10+2x", "relative", "Alembic matches relative forms from the start"),
    # malformed: refused
    TargetCase("", "malformed", "empty"),
    TargetCase("a:b", "malformed", "':' is Alembic's range syntax, not part of an id"),
    TargetCase("head:", "malformed", "':' is not allowed"),
    TargetCase("ab:cd", "malformed", "':' is not allowed"),
    TargetCase("v3.0.0.c-1", "malformed", "'-' inside an id (not relative: '.' ends the word)"),
    TargetCase("abc-def", "malformed", "'-' inside an id"),
    TargetCase("abc+", "malformed", "'+' inside an id"),
    TargetCase("head@", "malformed", "a branch without a symbol"),
    TargetCase("@head", "malformed", "a symbol without a branch"),
    TargetCase("a@b@c", "malformed", "'@' inside an id"),
    TargetCase("feature@base", "malformed", "one branch down to base: migrate does not do that"),
    TargetCase("feature@a:b", "malformed", "':' is not allowed"),
)

ACCEPTED = [case for case in CASES if case.verdict == "accepted"]
RELATIVE = [case for case in CASES if case.verdict == "relative"]
MALFORMED = [case for case in CASES if case.verdict == "malformed"]
