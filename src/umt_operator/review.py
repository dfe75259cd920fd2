"""Review in the cluster: ``spec.review``, the decision after a plan, and the status it writes.

Pure functions only. A resource with ``spec.review`` runs, for each generation, a plan Job
(``umt-migrations plan --format json``, see :mod:`umt_operator.review_jobs`) before its
migration Job. What the plan says (:class:`PlanSummary`, from the plan Job's termination
message) and what the spec asks (:class:`ReviewSpec`) give a :class:`Decision`:

- ``lint: Block`` and unaccepted errors: no migration Job, ``Stalled`` with ``LintFailed``;
- approval required (``Always``, or ``OnFindings`` with an unaccepted finding) and
  ``approvedPlanDigest`` is not the plan's digest: no migration Job, ``Ready=False`` with
  ``ApprovalPending``, neither Reconciling nor Stalled (kstatus: not progressing; Argo CD:
  Suspended);
- otherwise the migration Job runs with ``--plan-digest``: the runner refuses (``PlanChanged``,
  nothing applied) when what it would run is not what was planned.

``lint: Off`` ignores findings for both the block and ``OnFindings``. A plan with no step (the
database is at the target) needs no approval: nothing would run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from umt_operator import reasons
from umt_operator.spec import InvalidSpec
from umt_operator.status import make_condition, one_line, set_condition

LINT_MODES = ("Off", "Warn", "Block")
APPROVAL_MODES = ("Never", "OnFindings", "Always")
DRIFT_MODES = ("Off", "AfterMigration", "Periodic")
ON_DRIFT_MODES = ("Report", "Fail")
DEFAULT_LINT, DEFAULT_APPROVAL, DEFAULT_DRIFT, DEFAULT_ON_DRIFT = "Warn", "Never", "Off", "Report"
#: ``sha256:`` and 64 lowercase hex digits, as ``umt-migrations plan`` prints it.
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
#: A duration as Go and CEL write one, in hours, minutes and seconds (``1h30m``, ``10m``).
INTERVAL_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
MIN_DRIFT_INTERVAL_SECONDS = 300
DEFAULT_DRIFT_INTERVAL = "1h"
READY, RECONCILING, STALLED, DRIFTED = "Ready", "Reconciling", "Stalled", "Drifted"

DIGEST_MESSAGE = "review.approvedPlanDigest must be sha256: followed by 64 lowercase hex digits"
INTERVAL_MESSAGE = "review.interval must be a duration such as 10m or 1h30m, at least 5m"


@dataclass(frozen=True)
class ReviewSpec:
    """What ``spec.review`` asks for, defaults applied."""

    lint: str = DEFAULT_LINT
    approval: str = DEFAULT_APPROVAL
    approved_plan_digest: str | None = None
    drift: str = DEFAULT_DRIFT
    interval_seconds: int = 3600
    on_drift: str = DEFAULT_ON_DRIFT


def interval_seconds(text: str) -> int | None:
    """Seconds in a duration such as ``1h30m`` (None when it is not one)."""
    match = re.fullmatch(INTERVAL_PATTERN, text) if text else None
    if match is None:
        return None
    hours, minutes, seconds = (int(part[:-1]) if part else 0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _choice(review: Mapping[str, Any], key: str, choices: Sequence[str], default: str,
            problems: list[str]) -> str:
    value = review.get(key, default)
    if value is None:
        return default
    if value not in choices:
        problems.append(f"review.{key} must be one of {', '.join(choices)}")
        return default
    return str(value)


def parse_review(body_spec: Mapping[str, Any] | None) -> ReviewSpec | None:
    """``spec.review`` as a :class:`ReviewSpec`; None when the spec has no ``review``.

    Raises :class:`~umt_operator.spec.InvalidSpec` naming every problem, as ``parse_spec``.
    """
    review = (body_spec or {}).get("review")
    if review is None:
        return None
    if not isinstance(review, Mapping):
        raise InvalidSpec("review must be an object: {lint: Warn, approval: OnFindings, ...}")
    problems: list[str] = []
    lint = _choice(review, "lint", LINT_MODES, DEFAULT_LINT, problems)
    approval = _choice(review, "approval", APPROVAL_MODES, DEFAULT_APPROVAL, problems)
    drift = _choice(review, "drift", DRIFT_MODES, DEFAULT_DRIFT, problems)
    on_drift = _choice(review, "onDrift", ON_DRIFT_MODES, DEFAULT_ON_DRIFT, problems)
    digest = review.get("approvedPlanDigest")
    if digest is not None and (not isinstance(digest, str)
                               or not re.fullmatch(DIGEST_PATTERN, digest)):
        problems.append(DIGEST_MESSAGE)
        digest = None
    interval = review.get("interval", DEFAULT_DRIFT_INTERVAL)
    seconds = interval_seconds(interval) if isinstance(interval, str) else None
    if seconds is None or seconds < MIN_DRIFT_INTERVAL_SECONDS:
        problems.append(INTERVAL_MESSAGE)
        seconds = MIN_DRIFT_INTERVAL_SECONDS
    if problems:
        raise InvalidSpec("; ".join(problems))
    return ReviewSpec(lint=lint, approval=approval, approved_plan_digest=digest or None,
                      drift=drift, interval_seconds=seconds, on_drift=on_drift)


# --- what a plan Job reports -----------------------------------------------------------------


def _counts(value: Any) -> dict[str, int]:
    found = value if isinstance(value, Mapping) else {}
    return {key: int(found.get(key) or 0) for key in ("error", "warning", "accepted")}


@dataclass(frozen=True)
class PlanSummary:
    """The plan as the plan Job's termination message states it (no SQL, no messages)."""

    digest: str
    from_revision: str | None
    to_revision: str | None
    direction: str
    findings: dict[str, int]
    steps: tuple[tuple[str, dict[str, int]], ...] = ()
    steps_truncated: int | None = None  #: the real number of steps, when the list was cut

    @property
    def step_count(self) -> int:
        return self.steps_truncated or len(self.steps)

    @property
    def unaccepted(self) -> int:
        return self.findings["error"] + self.findings["warning"]


def parse_plan_summary(text: str | None) -> PlanSummary | None:
    """The summary ``plan`` writes as its termination message; None if ``text`` is not one."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("ok") is not True:
        return None
    digest = data.get("digest")
    if not isinstance(digest, str) or not re.fullmatch(DIGEST_PATTERN, digest):
        return None
    raw = data.get("steps")
    raw_steps: list[Any] = raw if isinstance(raw, list) else []
    steps = tuple((str(step.get("revision")), _counts(step.get("findings")))
                  for step in raw_steps if isinstance(step, Mapping))
    truncated = data.get("stepsTruncated")
    return PlanSummary(
        digest=digest,
        from_revision=_text(data.get("from")),
        to_revision=_text(data.get("to")),
        direction=str(data.get("direction") or "none"),
        findings=_counts(data.get("findings")),
        steps=steps,
        steps_truncated=truncated if isinstance(truncated, int) else None,
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def first_unaccepted(plan: Mapping[str, Any] | None, severity: str = "error") -> str | None:
    """``<revision>: <rule>: <message>`` of the full plan's first unaccepted finding."""
    for step in (plan or {}).get("steps") or []:
        for finding in step.get("findings") or []:
            if finding.get("severity") == severity and not finding.get("accepted"):
                return f"{step.get('revision')}: {finding.get('rule')}: {finding.get('message')}"
    return None


# --- the decision -----------------------------------------------------------------------------

Action = Literal["run", "block", "wait"]


@dataclass(frozen=True)
class Decision:
    """What follows a plan: run it (with its digest), block it, or wait for an approval."""

    action: Action
    reason: str
    message: str
    approval: str  #: NotRequired, Pending or Approved (recorded in ``status.plan``)
    digest: str


def approval_required(review: ReviewSpec, plan: PlanSummary) -> bool:
    """Whether this plan needs ``approvedPlanDigest`` before it runs."""
    if plan.step_count == 0:
        return False  # nothing would run
    if review.approval == "Always":
        return True
    return review.approval == "OnFindings" and review.lint != "Off" and plan.unaccepted > 0


def approve_hint(namespace: str, name: str, digest: str) -> str:
    """The commands that approve ``digest`` (for messages and the waiter)."""
    patch = json.dumps({"spec": {"review": {"approvedPlanDigest": digest}}},
                       separators=(",", ":"))
    return (f"umt-migrations approve {name} -n {namespace}, or kubectl patch "
            f"schemamigration {name} -n {namespace} --type merge -p '{patch}'")


def decide(review: ReviewSpec, plan: PlanSummary, *, namespace: str, name: str,
           first_error: str | None = None) -> Decision:
    """Run, block or wait, as the module docstring says."""
    total = plan.findings
    counted = (f"{total['error']} error(s), {total['warning']} warning(s), "
               f"{total['accepted']} accepted")
    if review.lint == "Block" and total["error"] and plan.step_count:
        detail = first_error or "see the plan's ConfigMap or run umt-migrations plan"
        message = (f"lint blocks plan {plan.digest} ({counted}): {detail}. Fix the revision, "
                   "or accept the finding in it with a reason (lint_accept)")
        return Decision("block", reasons.LINT_FAILED, message, "NotRequired", plan.digest)
    if not approval_required(review, plan):
        return Decision("run", reasons.JOB_CREATED, "", "NotRequired", plan.digest)
    if review.approved_plan_digest == plan.digest:
        return Decision("run", reasons.JOB_CREATED, "", "Approved", plan.digest)
    why = "every plan" if review.approval == "Always" else "a plan with findings"
    stale = (" (approvedPlanDigest is for another plan)"
             if review.approved_plan_digest else "")
    message = (f"plan {plan.digest} waits for approval{stale}: "
               f"{plan.from_revision or 'base'} -> {plan.to_revision or 'base'}, "
               f"{plan.step_count} step(s), {counted}; review.approval {review.approval} "
               f"requires it for {why}. Approve: {approve_hint(namespace, name, plan.digest)}")
    return Decision("wait", reasons.APPROVAL_PENDING, message, "Pending", plan.digest)


# --- status -----------------------------------------------------------------------------------


def plan_status(plan: PlanSummary, *, generation: int, job_name: str, config_map: str | None,
                approval: str, planned_at: str) -> dict[str, Any]:
    """``status.plan``: the summary of this generation's plan (the SQL is in the ConfigMap)."""
    status: dict[str, Any] = {
        "generation": generation,
        "from": plan.from_revision,
        "to": plan.to_revision,
        "direction": plan.direction,
        "digest": plan.digest,
        "steps": [{"revision": revision, "findings": counts} for revision, counts in plan.steps],
        "findings": dict(plan.findings),
        "sqlConfigMap": config_map,
        "approval": approval,
        "job": job_name,
        "plannedAt": planned_at,
    }
    if plan.steps_truncated:
        status["stepsTruncated"] = plan.steps_truncated
    return status


def _conditions(previous: Mapping[str, Any], flags: Mapping[str, bool], reason: str,
                message: str, generation: int, now: datetime) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
    for type_, value in flags.items():
        condition = make_condition(type_, value, reason, message, generation=generation, now=now)
        conditions = set_condition(conditions, condition)
    return conditions


def review_status(previous: Mapping[str, Any] | None, *, generation: int, state: str,
                  reason: str, message: str, now: datetime, job_name: str | None = None,
                  plan: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Status of a generation held by its review, before any migration Job.

    ``state`` is ``planning`` (Reconciling: the plan Job runs), ``pending`` (Ready False and
    nothing else: waiting for an approval) or ``stalled`` (the plan failed or lint blocks it).
    Revision fields are left alone: the database did not move. ``jobName`` is the plan Job
    (this generation has no migration Job yet).
    """
    flags = {READY: False, RECONCILING: state == "planning", STALLED: state == "stalled"}
    phase = "Failed" if state == "stalled" else "Pending"
    text = one_line(message if state == "planning" else f"{reason}: {message}")
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "message": text,
        "jobName": job_name,
        "startTime": None,
        "completionTime": None,
        "conditions": _conditions(previous or {}, flags, reason, text, generation, now),
    }
    if plan is not None:
        status["plan"] = dict(plan)
    return status


# --- drift ------------------------------------------------------------------------------------

_SIDES = ("extra", "missing", "modified")


@dataclass(frozen=True)
class DriftReport:
    """What ``check --format json`` says: drifted or not, and what differs."""

    supported: bool
    drifted: bool
    counts: dict[str, int] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)  #: side -> "kind name" items
    message: str | None = None  #: why it could not compare (not supported, not at head)


def parse_drift_report(text: str | None) -> DriftReport | None:
    """The drift report in a drift Job's termination message; None if ``text`` is not one."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or "supported" not in data:
        return None
    if data.get("supported") is not True or data.get("error"):
        return DriftReport(False, False, message=str(data.get("message") or data.get("error")))
    names: dict[str, list[str]] = {}
    for side in _SIDES:
        found = data.get(side)
        kinds: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        names[side] = [f"{_singular(kind)} {_item_name(item)}"
                       for kind, items in kinds.items() for item in items or []]
    return DriftReport(True, data.get("drifted") is True, counts=_side_counts(data), names=names)


def _singular(kind: str) -> str:
    return {"indexes": "index", "tables": "table", "columns": "column",
            "constraints": "constraint"}.get(kind, kind)


def _item_name(item: Any) -> str:
    """A name as ``check`` writes it; a modified column also says what changed."""
    if isinstance(item, Mapping):
        change = f" ({item['change']})" if item.get("change") else ""
        return f"{item.get('name')}{change}"
    return str(item)


def _side_counts(data: Mapping[str, Any]) -> dict[str, int]:
    found = data.get("counts")
    raw: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    return {side: int(raw.get(side) or 0) for side in _SIDES}


def drift_summary(report: DriftReport, limit: int = 600) -> str:
    """One line: ``extra: column users.x; missing: index ix_a`` (cut at ``limit``)."""
    parts = []
    for side in _SIDES:
        items = report.names.get(side) or []
        if items:
            more = report.counts.get(side, len(items)) - len(items)
            parts.append(f"{side}: {', '.join(items)}" + (f" (+{more} more)" if more > 0 else ""))
    return one_line("; ".join(parts) or "no difference", limit)


def drift_status(previous: Mapping[str, Any] | None, report: DriftReport | None, *,
                 review: ReviewSpec, generation: int, job_name: str, now: datetime,
                 checked_at: str, failure: str | None = None) -> dict[str, Any]:
    """``status.drift`` and the ``Drifted`` condition; Ready only with ``onDrift: Fail``.

    ``report`` None (the drift Job failed without one) sets ``Drifted=Unknown`` with
    ``failure`` as its message.
    """
    previous = previous or {}
    if report is None or not report.supported:
        reason = reasons.DRIFT_CHECK_FAILED if report is None else reasons.DRIFT_NOT_SUPPORTED
        message = (failure if report is None else report.message) or "the drift check failed"
        condition = make_condition(DRIFTED, "Unknown", reason, message, generation=generation,
                                   now=now)
        drift: dict[str, Any] = {"checkedAt": checked_at, "job": job_name,
                                 "message": one_line(message)}
    else:
        summary = drift_summary(report)
        reason = reasons.DRIFTED if report.drifted else reasons.NO_DRIFT
        message = (f"the database differs from the models: {summary}" if report.drifted
                   else "the database matches the models")
        condition = make_condition(DRIFTED, report.drifted, reason, message,
                                   generation=generation, now=now)
        drift = {"checkedAt": checked_at, "job": job_name,
                 **{side: report.names.get(side, []) for side in _SIDES},
                 "counts": dict(report.counts)}
    conditions = set_condition(previous.get("conditions") or [], condition)
    status: dict[str, Any] = {"drift": drift, "conditions": conditions}
    if report is not None and report.supported and not report.drifted:
        back = drift_cleared({"conditions": conditions}, generation=generation, now=now,
                             message="the database is at the target and matches the models")
        if back is not None:
            status["conditions"] = back
            status["message"] = "the database is at the target and matches the models again"
    if review.on_drift == "Fail" and report is not None and report.drifted:
        text = one_line(f"{reasons.DRIFTED}: {message}")
        status["conditions"] = _conditions({"conditions": conditions},
                                           {READY: False, RECONCILING: False, STALLED: True},
                                           reasons.DRIFTED, text, generation, now)
        status["message"] = text
    return status


def summary_from_status(plan: Mapping[str, Any]) -> PlanSummary:
    """The :class:`PlanSummary` that ``status.plan`` (see :func:`plan_status`) records."""
    steps = tuple((str(step.get("revision")), _counts(step.get("findings")))
                  for step in plan.get("steps") or [] if isinstance(step, Mapping))
    truncated = plan.get("stepsTruncated")
    return PlanSummary(
        digest=str(plan.get("digest")),
        from_revision=_text(plan.get("from")),
        to_revision=_text(plan.get("to")),
        direction=str(plan.get("direction") or "none"),
        findings=_counts(plan.get("findings")),
        steps=steps,
        steps_truncated=truncated if isinstance(truncated, int) else None,
    )


def drift_cleared(previous: Mapping[str, Any], *, generation: int, now: datetime,
                  message: str) -> list[dict[str, Any]] | None:
    """With ``onDrift: Fail``, the conditions once drift is gone: Ready back to True (None
    when Ready was not taken down by drift)."""
    ready: Mapping[str, Any] = next(
        (c for c in previous.get("conditions") or [] if c.get("type") == READY), {})
    if ready.get("reason") != reasons.DRIFTED:
        return None
    return _conditions(previous, {READY: True, RECONCILING: False, STALLED: False},
                       reasons.SUCCEEDED, message, generation, now)
