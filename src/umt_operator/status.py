"""Status as a small API: what a ``SchemaMigration`` reports, computed from its Job and pods.

Pure functions only. :func:`compute_status` turns what a Job and its pods say (read by
:func:`umt_operator.jobs.observe_job`, re-exported here) into the status patch with the kstatus
conditions ``Ready``, ``Reconciling`` and ``Stalled``. Every message is one line, at most
1024 characters, with passwords scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from umt_migrations.masking import scrub
from umt_operator import lockwaits, reasons
from umt_operator.jobs import (
    ANNOTATION_GENERATION,
    ANNOTATION_INPUTS,
    JobObservation,
    PodProblem,
    PodRefusal,
    RunnerReport,
    observe_job,
    parse_report,
)

__all__ = [
    "JobObservation",
    "PodProblem",
    "RunnerReport",
    "compute_status",
    "event_message_for_failure",
    "event_message_for_success",
    "failure_reason",
    "find_condition",
    "invalid_spec_status",
    "is_ready",
    "kstatus_conditions",
    "make_condition",
    "observe_job",
    "one_line",
    "parse_report",
    "rfc3339",
    "set_condition",
    "stalled_status",
    "unschedulable_for",
    "waiting_status",
]

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
MAX_MESSAGE = 1024

_CONDITION_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def rfc3339(moment: datetime) -> str:
    """``moment`` as Kubernetes writes times: UTC, whole seconds, ``Z`` suffix."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(text: str, limit: int = MAX_MESSAGE, *, keep_end: bool = False) -> str:
    """``text`` scrubbed of passwords, on one line, cut to ``limit`` characters."""
    flat = " ".join(scrub(text).split())
    if len(flat) <= limit:
        return flat
    return "…" + flat[-(limit - 1) :] if keep_end else flat[: limit - 1] + "…"


# --- conditions -------------------------------------------------------------------------------


def find_condition(conditions: Iterable[Mapping[str, Any]],
                   type_: str) -> dict[str, Any] | None:
    """The condition of type ``type_``, or None."""
    return next((dict(c) for c in conditions if c.get("type") == type_), None)


def make_condition(
    type_: str, status: bool | str, reason: str, message: str, *, generation: int, now: datetime
) -> dict[str, Any]:
    """A ``metav1.Condition`` dict; ``status`` may be a bool or "True"/"False"/"Unknown"."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    return {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": rfc3339(now),
        "reason": reason,
        "message": one_line(message),
    }


def set_condition(
    conditions: Iterable[Mapping[str, Any]], condition: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``conditions`` with ``condition`` replacing the one of its type (or appended).

    The previous ``lastTransitionTime`` is kept when the status does not change.
    """
    new = dict(condition)
    result: list[dict[str, Any]] = []
    replaced = False
    for existing in conditions:
        if existing.get("type") != new["type"]:
            result.append(dict(existing))
        elif not replaced:  # a duplicate of the type is dropped: the list is keyed by type
            if existing.get("status") == new["status"] and existing.get("lastTransitionTime"):
                new["lastTransitionTime"] = existing["lastTransitionTime"]
            result.append(new)
            replaced = True
    if not replaced:
        result.append(new)
    return result


def kstatus_conditions(
    previous: Mapping[str, Any],
    *,
    state: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Ready / Reconciling / Stalled for ``state`` "progressing", "ready" or "stalled"."""
    flags = {
        READY: state == "ready",
        RECONCILING: state == "progressing",
        STALLED: state == "stalled",
    }
    conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
    for type_, status in flags.items():
        condition = make_condition(type_, status, reason, message, generation=generation, now=now)
        conditions = set_condition(conditions, condition)
    return conditions


# --- messages ---------------------------------------------------------------------------------


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f", {duration:.1f} s"


def event_message_for_success(report: RunnerReport) -> str:
    """One line for a successful run: ``migrated a1b2→d4e5, 3 steps, 1.2 s``."""
    target = report.to_revision or report.target_revision or "base"
    if report.direction == "none" or not report.applied:
        return f"already at {target}{_seconds(report.duration_seconds)}"
    steps = len(report.applied)
    noun = "step" if steps == 1 else "steps"
    verb = "downgraded" if report.direction == "downgrade" else "migrated"
    origin = report.from_revision or "base"
    return f"{verb} {origin}→{target}, {steps} {noun}{_seconds(report.duration_seconds)}"


def failure_reason(observation: JobObservation) -> str:
    """The condition reason explaining a failed run (runner's reason first, then the Job's)."""
    report = observation.report
    if (report and report.error_reason and _CONDITION_REASON.match(report.error_reason)
            and len(report.error_reason) <= 64):
        return report.error_reason
    if report is None and observation.pod_problem:
        return observation.pod_problem.reason
    if observation.failure_reason in reasons.JOB_FAILURE_REASONS:
        return str(observation.failure_reason)
    if observation.exit_code == 3:
        return reasons.MIGRATION_FAILED
    return reasons.JOB_FAILED


def event_message_for_failure(job_name: str, observation: JobObservation) -> str:
    """One line explaining a failed run, for the status message and the Warning event."""
    reason = failure_reason(observation)
    report = observation.report
    if (gave_up := lockwaits.gave_up_detail(observation)) is not None:
        detail = gave_up
    elif report and report.error_message:
        detail = report.error_message
    elif observation.pod_problem and report is None:
        detail = f"pod of Job {job_name} could not start: {observation.pod_problem.message}"
    elif observation.log_tail:
        tail = one_line(observation.log_tail, 700, keep_end=True)
        detail = f"Job {job_name} failed (exit code {observation.exit_code}); log: {tail}"
    else:
        detail = observation.failure_message or f"Job {job_name} failed"
    suffix = ""
    job_reason = observation.failure_reason
    if job_reason and job_reason != reason and job_reason in reasons.JOB_FAILURE_REASONS:
        suffix = f" (Job {job_name}: {job_reason})"
    room = MAX_MESSAGE - len(reason) - 2 - len(suffix)
    return one_line(f"{reason}: {one_line(detail, room)}{suffix}")


# --- the status patch -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    state: str  # "progressing", "ready" or "stalled"
    phase: str
    reason: str
    message: str
    fields: Mapping[str, Any]


def unschedulable_for(obs: JobObservation | None, now: datetime) -> float | None:
    """Seconds the Job's pod has waited for a node (None when it is not waiting for one)."""
    if obs is None or obs.running or obs.pending_message is None:
        return None
    since = _parse_time(obs.unschedulable_since)
    return max(0.0, (now - since).total_seconds()) if since else 0.0


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _progress(
    job_name: str, obs: JobObservation | None, target: str, now: datetime, threshold: float
) -> _Outcome:
    if obs is None:
        message = f"creating Job {job_name} to migrate to {target}"
        return _Outcome("progressing", PENDING, reasons.JOB_CREATED, message, {})
    if obs.pod_problem:
        message = (
            f"pod of Job {job_name} cannot start: {obs.pod_problem.message} (Kubernetes keeps "
            "retrying until the Job's deadline; fix the cause, or change the spec)"
        )
        return _Outcome("stalled", PENDING, obs.pod_problem.reason, message, {})
    if obs.pod_refused is not None:
        return _refused(job_name, obs.pod_refused)
    waited = unschedulable_for(obs, now)
    if waited is not None and waited >= threshold:
        message = (
            f"pod of Job {job_name} cannot be scheduled (for {waited:.0f}s): "
            f"{obs.pending_message}"
        )
        return _Outcome("stalled", PENDING, reasons.UNSCHEDULABLE, message, {})
    if obs.latest_pod_ended and obs.exit_code == 0:
        message = f"Job {job_name} has migrated the database to {target}; completing"
        return _Outcome("progressing", RUNNING, reasons.MIGRATING, message, {})
    if (lock_wait := lockwaits.retrying_message(job_name, obs)) is not None:
        return _Outcome("progressing", RUNNING, reasons.LOCK_TIMEOUT, lock_wait, {})
    if obs.latest_pod_ended:
        detail = event_message_for_failure(job_name, obs)
        message = f"Job {job_name}: attempt {max(obs.failed_attempts, 1)} failed ({detail}); " \
                  + _what_follows(obs.exit_code)
        return _Outcome("progressing", RUNNING, reasons.MIGRATING, message, {})
    if not obs.running:
        waiting = f": {obs.pending_message}" if obs.pending_message else ""
        noun = "a node for its pod" if waited is not None else "its pod to start"
        message = f"Job {job_name} created, waiting for {noun}{waiting}"
        return _Outcome("progressing", PENDING, reasons.JOB_CREATED, message, {})
    message = f"Job {job_name} is migrating the database to {target}"
    if obs.failed_attempts:
        message += f" (attempt {obs.failed_attempts + 1}"
        if obs.report or obs.log_tail:
            message += f"; the previous one failed: {event_message_for_failure(job_name, obs)}"
        message += ")"
    return _Outcome("progressing", RUNNING, reasons.MIGRATING, message, {})


def _refused(job_name: str, refusal: PodRefusal) -> _Outcome:
    """The cluster refuses the Job's pod: for good (PodRejected) or until a quota has room."""
    if refusal.may_clear:
        message = (f"the cluster refuses the pod of Job {job_name} for now: {refusal.message} "
                   "(the Job controller retries with back-off; the pod starts once the quota "
                   "has room)")
        return _Outcome("progressing", PENDING, reasons.QUOTA_EXCEEDED, message, {})
    message = (f"the cluster refuses the pod of Job {job_name}: {refusal.message} (the Job "
               "controller retries with back-off until the Job's deadline; fix the spec, or "
               "what the namespace requires of pods)")
    return _Outcome("stalled", PENDING, reasons.POD_REJECTED, message, {})


#: Exit codes the Job's podFailurePolicy fails at once (``FailJob``), with what they mean.
_NEVER_RETRIED = {2: "an invalid request", 3: "a migration failed"}


def _what_follows(exit_code: int | None) -> str:
    """What the Job controller does after a failed attempt with ``exit_code``."""
    if exit_code in _NEVER_RETRIED:
        return (f"exit code {exit_code} ({_NEVER_RETRIED[exit_code]}) is never retried: "
                "the Job fails")
    return "the Job retries it while its backoffLimit allows, then fails"


def _success(obs: JobObservation, job_name: str, target: str, image: str) -> _Outcome:
    report = obs.report
    if report is None:
        message = f"Job {job_name} succeeded but left no report; the database is at {target}"
        fields: dict[str, Any] = {"currentRevision": None, "targetRevision": target}
    else:
        message = event_message_for_success(report)
        fields = {
            "currentRevision": report.to_revision,
            "targetRevision": report.target_revision or report.to_revision or target,
            "direction": report.direction,
            "appliedRevisions": list(report.applied),
        }
    fields["appliedImage"] = image
    return _Outcome("ready", SUCCEEDED, reasons.SUCCEEDED, message, fields)


def _failure(
    obs: JobObservation, job_name: str, target: str, image: str, previous: Mapping[str, Any]
) -> _Outcome:
    report = obs.report
    fields: dict[str, Any] = {"targetRevision": target}
    if report is not None:
        current = report.to_revision or report.from_revision or previous.get("currentRevision")
        fields = {
            "currentRevision": current,
            "targetRevision": report.target_revision or target,
            "direction": report.direction,
            "appliedRevisions": list(report.applied),
        }
        # Steps committed before the failure: this image now holds the database's revision.
        if report.to_revision and report.to_revision != report.from_revision:
            fields["appliedImage"] = image
    message = event_message_for_failure(job_name, obs)
    return _Outcome("stalled", FAILED, failure_reason(obs), message, fields)


def _outcome(
    job_name: str,
    obs: JobObservation | None,
    target: str,
    image: str,
    previous: Mapping[str, Any],
    now: datetime,
    threshold: float,
) -> _Outcome:
    if obs is not None and obs.succeeded:
        return _success(obs, job_name, target, image)
    if obs is not None and obs.failed:
        return _failure(obs, job_name, target, image, previous)
    return _progress(job_name, obs, target, now, threshold)


_KEPT_FIELDS = (
    "currentRevision",
    "targetRevision",
    "direction",
    "appliedRevisions",
    "appliedImage",
)


def compute_status(
    *,
    generation: int,
    previous_status: Mapping[str, Any] | None,
    job_name: str,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    spec_target: str,
    image: str,
    now: datetime,
    unschedulable_after: float = 60.0,
    refusal: PodRefusal | None = None,
) -> dict[str, Any]:
    """The full status of a resource whose current generation runs as Job ``job_name``.

    ``job`` is None while the Job is not visible yet. Fields of the last run that this one does
    not change are carried over from ``previous_status``; a ``None`` value (merge-patch
    semantics) removes a field, e.g. ``completionTime`` while a new run is in progress. A pod
    that no node fits is only waited on for ``unschedulable_after`` seconds, then ``Stalled``;
    ``refusal`` is the cluster's newest refusal to create the Job's pod.
    """
    previous = previous_status or {}
    obs = observe_job(job, pods, refusal) if job is not None else None
    outcome = _outcome(job_name, obs, spec_target, image, previous, now, unschedulable_after)
    same_run = previous if previous.get("jobName") == job_name else {}
    start = (obs and obs.start_time) or same_run.get("startTime") or rfc3339(now)
    completion = None
    if obs is not None and obs.finished:
        completion = obs.completion_time or same_run.get("completionTime") or rfc3339(now)
    message = one_line(outcome.message)
    status: dict[str, Any] = {key: previous.get(key) for key in _KEPT_FIELDS}
    status.update(outcome.fields)
    status.update(
        observedGeneration=generation,
        phase=outcome.phase,
        jobName=job_name,
        startTime=start,
        completionTime=completion,
        message=message,
        conditions=kstatus_conditions(
            previous,
            state=outcome.state,
            reason=outcome.reason,
            message=message,
            generation=generation,
            now=now,
        ),
    )
    # What a later generation with the same inputs may rely on (umt_operator.rerun): set by a
    # success, removed while a Job runs or after it failed (the database may have moved).
    status["lastSuccess"] = _last_success(job, job_name) if outcome.phase == SUCCEEDED else None
    return status


def _last_success(job: Mapping[str, Any] | None, job_name: str) -> dict[str, Any] | None:
    """The run a Job that just succeeded made: its generation, name and inputs digest."""
    annotations = ((job or {}).get("metadata") or {}).get("annotations") or {}
    inputs, generation = annotations.get(ANNOTATION_INPUTS), annotations.get(ANNOTATION_GENERATION)
    if not inputs or not str(generation or "").isdigit():
        return None  # a Job from before inputs were recorded: nothing to rely on
    return {"generation": int(str(generation)), "jobName": job_name, "inputs": inputs}


def stalled_status(
    generation: int,
    previous_status: Mapping[str, Any] | None,
    reason: str,
    message: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Status patch for a generation that gets no Job: ``Stalled`` with ``reason``.

    For a spec the operator refuses (``InvalidSpec``, ``PolicyDenied``) or a Job the cluster
    refuses (``JobRejected``, ``JobConflict``). Revision fields are left alone (the database
    did not move); ``jobName`` is removed (this generation has no Job).
    """
    text = one_line(f"{reason}: {message}")
    return {
        "observedGeneration": generation,
        "phase": FAILED,
        "jobName": None,
        "message": text,
        "conditions": kstatus_conditions(
            previous_status or {},
            state="stalled",
            reason=reason,
            message=text,
            generation=generation,
            now=now or datetime.now(UTC),
        ),
    }


def waiting_status(
    status: Mapping[str, Any],
    generation: int,
    blocker: Mapping[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Status patch for generation N, seen but waiting: ``blocker``, the Job of a generation
    M < N, still migrates.

    Progressing (Ready False, Reconciling True, reason ``Migrating``); ``jobName`` is left
    alone (the Job running is the older generation's).
    """
    blocker_name = blocker["metadata"]["name"]
    blocker_generation = (blocker["metadata"].get("annotations") or {}).get(ANNOTATION_GENERATION)
    message = one_line(
        f"waiting for Job {blocker_name} (generation {blocker_generation}) to finish before "
        f"running generation {generation}"
    )
    return {
        "observedGeneration": generation,
        "phase": PENDING,
        "message": message,
        "conditions": kstatus_conditions(
            status,
            state="progressing",
            reason=reasons.MIGRATING,
            message=message,
            generation=generation,
            now=now or datetime.now(UTC),
        ),
    }


def invalid_spec_status(
    generation: int,
    previous_status: Mapping[str, Any] | None,
    message: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Status patch for a spec the operator refuses: ``Stalled`` with reason ``InvalidSpec``."""
    return stalled_status(generation, previous_status, reasons.INVALID_SPEC, message, now)


def is_ready(status: Mapping[str, Any] | None, generation: int) -> bool:
    """True when ``Ready`` is True for ``generation`` (what ``kubectl wait`` checks)."""
    ready = find_condition((status or {}).get("conditions") or [], READY)
    if ready is None:
        return False
    return ready.get("status") == "True" and ready.get("observedGeneration") == generation
