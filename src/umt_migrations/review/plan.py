"""The reviewable plan of a move: its steps, their SQL and findings, and its digest.

``umt-migrations plan --format json`` prints :meth:`ReviewPlan.to_json` (format version
:data:`PLAN_FORMAT_VERSION`, documented in the README, "Reviewing a change"); the digest is the
one the runner recomputes when ``migrate --plan-digest`` asks it to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory

from .. import graph
from ..project import Project
from . import guide, sqlrules, squawk
from .digest import digest
from .findings import ERROR, WARNING, Finding, accept, counts, merge
from .render import RenderedStep, Rendering, render

PLAN_FORMAT_VERSION = 1
#: The summary written as a Job's termination message stays under the kubelet's 4096 bytes.
SUMMARY_MAX_BYTES = 4096


@dataclass
class PlanStep:
    """One revision that would run, with its SQL and what the rules say about it."""

    rendered: RenderedStep
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        step = self.rendered
        return {
            "revision": step.revision,
            "description": step.description,
            "sql": step.sql,
            "contentHash": step.source.content_hash,
            "findings": [finding.to_json() for finding in self.findings],
        }


@dataclass
class ReviewPlan:
    """A move, reviewed: what runs, in order, and the digest that approves exactly that."""

    dialect: str
    from_revision: str | None
    to_revision: str | None
    direction: str
    steps: list[PlanStep]
    digest: str
    #: ``revision-edited`` findings on revisions the database already ran (``--applied-hashes``)
    edited: list[tuple[str, Finding]] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        steps = [finding for step in self.steps for finding in step.findings]
        return steps + [finding for _, finding in self.edited]

    def counts(self) -> dict[str, int]:
        return counts(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PLAN_FORMAT_VERSION,
            "dialect": self.dialect,
            "from": self.from_revision,
            "to": self.to_revision,
            "direction": self.direction,
            "steps": [step.to_json() for step in self.steps],
            "findings": self.counts(),
            "digest": self.digest,
            **({"edited": [{"revision": rev, **finding.to_json()} for rev, finding in self.edited]}
               if self.edited else {}),
        }

    def summary(self) -> dict[str, Any]:
        """The plan without SQL and messages, bounded: a Job's termination message."""
        data: dict[str, Any] = {
            "ok": True,
            "version": PLAN_FORMAT_VERSION,
            "dialect": self.dialect,
            "from": self.from_revision,
            "to": self.to_revision,
            "direction": self.direction,
            "digest": self.digest,
            "findings": self.counts(),
            "steps": [
                {"revision": s.rendered.revision, "findings": counts(s.findings)}
                for s in self.steps
            ],
        }
        while len(dump(data).encode()) > SUMMARY_MAX_BYTES and data["steps"]:
            data["steps"] = data["steps"][: len(data["steps"]) // 2]
            data["stepsTruncated"] = len(self.steps)
        return data


def dump(data: dict[str, Any]) -> str:
    """Compact JSON on one line (so a plan can be picked out of a pod's log)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


#: Extra findings for a step (``lint --against``): given the rendered step, returns findings.
ExtraCheck = Callable[[RenderedStep], list[Finding]]


def edited_since_applied(
    script: ScriptDirectory, recorded: dict[str, str]
) -> list[tuple[str, Finding]]:
    """``revision-edited`` for each revision whose file no longer has the hash it ran with.

    ``recorded`` maps revision ids to the ``contentHash`` a plan gave them when they ran (the
    operator keeps it); revisions the scripts do not hold are left to the move's own checks.
    """
    from .source import RevisionSource

    edited = []
    for revision_id, then in sorted(recorded.items()):
        try:
            revision = script.revision_map.get_revision(revision_id)
        except Exception:  # noqa: BLE001 - unknown or ambiguous ids: not this check's business
            revision = None
        path = getattr(revision, "path", None)  # a Script: the revision's file
        if revision is None or path is None:
            continue
        now = RevisionSource.read(path).content_hash
        if now != then:
            edited.append((revision.revision, Finding(
                "revision-edited", ERROR,
                f"{revision.revision} ran with content {then[:19]}…, its file now has "
                f"{now[:19]}…: the databases that ran it will not run the edit; revert it and "
                "write a new revision",
                source="plan",
            )))
    return edited


def build(
    project: Project,
    script: ScriptDirectory,
    move: graph.Plan,
    *,
    extra: ExtraCheck | None = None,
) -> ReviewPlan:
    """Render ``move`` offline, lint every step, and digest it."""
    rendering = render(project, script, move)
    step_findings = lint(rendering, squawk.config_for(Path(script.dir), project.config_path))
    steps = []
    for step, findings in zip(rendering.steps, step_findings, strict=True):
        if extra is not None:
            findings = findings + extra(step)
        steps.append(PlanStep(step, accept(merge(findings), step.source.acceptances.reasons)))
    from_revision = graph.format_heads(move.current)
    to_revision = graph.format_heads(move.target)
    return ReviewPlan(
        dialect=rendering.dialect,
        from_revision=from_revision,
        to_revision=to_revision,
        direction=move.direction,
        steps=steps,
        digest=digest(from_revision, to_revision, rendering.steps),
    )


def lint(rendering: Rendering, squawk_config: Path | None = None) -> list[list[Finding]]:
    """The findings of each rendered step (before acceptance), in order."""
    statements = [sqlrules.split(step.sql, rendering.dialect) for step in rendering.steps]
    version_table = rendering.version_table.lower()
    bookkeeping = [
        {s.start for s in stmts if version_table in s.tables()} for stmts in statements
    ]
    reported = (
        squawk.lint([step.sql for step in rendering.steps], squawk_config)
        if rendering.dialect == "postgresql"
        else [[] for _ in rendering.steps]
    )
    result = []
    for step, stmts, skip, items in zip(
        rendering.steps, statements, bookkeeping, reported, strict=True
    ):
        ours = [s for s in stmts if s.start not in skip]
        findings = guide.check(step.source) + sqlrules.check(ours)
        for item in items:
            statement = _statement_at(stmts, squawk.offset(
                step.sql, int(item.get("line") or 0), int(item.get("column") or 0)
            ))
            if statement is not None and statement.start in skip:
                continue
            found = squawk.finding(item, statement.text if statement else None)
            if found.rule == "syntax-error":  # squawk's parser, not the migration, is at fault
                found = Finding(found.rule, WARNING, f"squawk cannot parse: {found.message}",
                                found.statement, source="squawk")
            findings.append(found)
        if not step.renderable:
            findings.append(Finding(
                "not-offline-renderable", WARNING,
                f"the revision cannot be rendered as SQL offline: it needs a live database "
                f"({step.error}); review its file, which the digest covers",
                source="plan",
            ))
        result.append(findings)
    return result


def _statement_at(statements: Sequence[sqlrules.Statement], offset: int) -> Any:
    """The statement that contains ``offset``, else the next one after it."""
    for statement in statements:
        if offset < statement.end:
            return statement
    return statements[-1] if statements else None


def to_text(plan: ReviewPlan) -> str:
    """The plan for a person: header, then each step's SQL and findings."""
    total = plan.counts()
    lines = [
        f"plan: {plan.direction} {plan.from_revision or 'base'} -> {plan.to_revision or 'base'}"
        f" on {plan.dialect}, {len(plan.steps)} step(s)",
        f"findings: {total['error']} error(s), {total['warning']} warning(s), "
        f"{total['accepted']} accepted",
        f"digest: {plan.digest}",
    ]
    for step in plan.steps:
        rendered = step.rendered
        lines += ["", f"== {rendered.revision}  {rendered.description}",
                  f"   file: {rendered.source.path.name}  ({rendered.source.content_hash})", ""]
        lines += [f"   {line}".rstrip() for line in rendered.sql.rstrip().splitlines()]
        for finding in step.findings:
            lines.append("")
            lines.append(f"   {describe(finding)}")
            if finding.statement:
                lines.append(f"      at: {_one_line(finding.statement)}")
    return "\n".join(lines) + "\n"


def describe(finding: Finding) -> str:
    """``error ban-drop-column: message [accepted: reason]`` on one line."""
    verdict = f"accepted {finding.severity}" if finding.accepted else finding.severity
    text = f"{verdict} {finding.rule}: {finding.message}"
    return f"{text} [accepted: {finding.reason}]" if finding.accepted else text


def _one_line(statement: str, limit: int = 160) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
