"""Findings, their severities, and the acceptances a revision file declares.

A finding is what one rule says about one statement (or about the revision file). A revision
accepts a rule with a module attribute ``lint_accept = {"rule": "reason"}``: its findings of
that rule stay in the plan, marked accepted with the reason, and no longer count as errors or
warnings. An acceptance without a reason is itself an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"

#: Rules about the acceptances themselves and about edits: a revision cannot wave them away.
UNACCEPTABLE = frozenset({"lint-accept-without-reason", "lint-accept-invalid", "revision-edited"})


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one statement of a step (or on the revision file)."""

    rule: str
    severity: Severity
    message: str
    statement: str | None = None  #: the SQL statement, or None for a finding on the file
    source: str = "project"  #: squawk | sql | guide | plan: which checker said so
    accepted: bool = False
    reason: str | None = None  #: the revision's reason, when accepted

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def accept(findings: Iterable[Finding], acceptances: Mapping[str, str]) -> list[Finding]:
    """``findings`` with those of an accepted rule marked accepted (a reason is required)."""
    out = []
    for finding in findings:
        reason = acceptances.get(finding.rule, "").strip()
        if reason and finding.rule not in UNACCEPTABLE:
            finding = replace(finding, accepted=True, reason=reason)
        out.append(finding)
    return out


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per (rule, statement): squawk and the project's SQL rules share names."""
    kept: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        key = (finding.rule, finding.statement)
        seen = kept.get(key)
        if seen is None:
            kept[key] = finding
        elif finding.severity == ERROR and seen.severity != ERROR:
            kept[key] = replace(seen, severity=ERROR, source=f"{seen.source}+{finding.source}")
    return list(kept.values())


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    """``{"error": n, "warning": n, "accepted": n}``: accepted findings count only as accepted."""
    result = {ERROR: 0, WARNING: 0, "accepted": 0}
    for finding in findings:
        result["accepted" if finding.accepted else finding.severity] += 1
    return result
