"""The review steps of the reconcile pipeline (a resource with ``spec.review``).

    before the migration Job:  plan Job ─► its summary (termination message) and full plan
        (pod log ─► ConfigMap) ─► decide ─► run with --plan-digest | LintFailed | ApprovalPending
    after a success:           drift Job (AfterMigration: once; Periodic: every interval)
        ─► the Drifted condition and status.drift

Each step reads what exists and does at most one thing, so any number of events ends in one
plan Job per generation and one drift Job per check. The pipeline (:mod:`umt_operator.reconcile`)
hands in its status writer, its event poster and a way to be called again later (:class:`Hooks`):
this module imports nothing of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from umt_operator import reasons
from umt_operator.jobs import CONTAINER_NAME, JobOwner, controlled_by, observe_job, render_job
from umt_operator.kube import KubeAPI, KubeError
from umt_operator.review import (
    DRIFTED,
    ReviewSpec,
    decide,
    drift_status,
    first_unaccepted,
    parse_drift_report,
    parse_plan_summary,
    plan_status,
    review_status,
    summary_from_status,
)
from umt_operator.review_jobs import (
    DRIFT,
    LOG_LIMIT_BYTES,
    PLAN,
    last_pod_name,
    plan_config_map,
    plan_from_log,
    review_job,
    review_job_name,
    termination_message,
)
from umt_operator.settings import Settings
from umt_operator.spec import MigrationSpec
from umt_operator.status import event_message_for_failure, failure_reason, find_condition, rfc3339

#: A drift Job is kept at most this long after it ends (each check makes one).
DRIFT_JOB_TTL = 3600


@dataclass(frozen=True)
class Hooks:
    """What the pipeline lends the review steps."""

    api: KubeAPI
    settings: Settings
    #: Merge-patch the status when it changed (``(old, new) -> written?``).
    write: Callable[[Mapping[str, Any], Mapping[str, Any]], Awaitable[bool]]
    #: Post an Event about the resource (``(type, reason, message)``).
    event: Callable[[str, str, str], None]
    #: Reconcile the resource again in this many seconds.
    recheck: Callable[[float], None]


@dataclass(frozen=True)
class Gate:
    """The review's verdict for this generation: hold (nothing to run yet), or run with the
    digest of the plan."""

    hold: bool
    digest: str | None = None


def _migration_job(hooks: Hooks, body: Mapping[str, Any], spec: MigrationSpec) -> dict[str, Any]:
    meta = body["metadata"]
    return render_job(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""),
                      generation=int(meta.get("generation") or 1), spec=spec,
                      settings=hooks.settings, image=spec.image or hooks.settings.default_image)


async def before_migration(hooks: Hooks, body: Mapping[str, Any], spec: MigrationSpec,
                           review: ReviewSpec, status: dict[str, Any],
                           logger: kopf.Logger) -> Gate:
    """Plan this generation, then run, block or wait (see :mod:`umt_operator.review`)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation") or 1)
    recorded = status.get("plan") or {}
    if recorded.get("generation") == generation and recorded.get("approval"):
        decision = decide(review, summary_from_status(recorded), namespace=namespace, name=name)
        return Gate(hold=decision.action != "run", digest=decision.digest)
    plan_name = review_job_name(name, str(meta.get("uid") or ""), generation, PLAN)
    now = datetime.now(UTC)
    job = await hooks.api.get_job(namespace, plan_name)
    if job is not None and not JobOwner.of(body).owns(job):  # never read another's Job
        await hooks.write(status, review_status(
            status, generation=generation, state="stalled", reason=reasons.JOB_CONFLICT,
            message=f"a Job named {plan_name} already exists in namespace {namespace} and does "
                    "not belong to this resource; it is ignored: delete it, or re-create this "
                    "resource", now=now, job_name=plan_name))
        return Gate(hold=True)
    if job is None:
        manifest = review_job(_migration_job(hooks, body, spec), kind=PLAN, name=plan_name)
        _job, created = await hooks.api.create_job(namespace, manifest)
        message = f"created plan Job {plan_name} to plan the move to {spec.target_revision}"
        if created:
            logger.info(message)
            hooks.event("Normal", reasons.PLANNING, message)
        await hooks.write(status, review_status(status, generation=generation, state="planning",
                                                reason=reasons.PLANNING, message=message,
                                                now=now, job_name=plan_name))
        return Gate(hold=True)
    pods = [pod for pod in await hooks.api.list_pods(namespace, plan_name)
            if controlled_by(pod, job)]
    observation = observe_job(job, pods)
    if not observation.finished:
        problem = observation.pod_problem
        state, reason = ("stalled", problem.reason) if problem else ("planning", reasons.PLANNING)
        message = (f"pod of plan Job {plan_name} cannot start: {problem.message}" if problem
                   else f"plan Job {plan_name} is planning the move to {spec.target_revision}")
        await hooks.write(status, review_status(status, generation=generation, state=state,
                                                reason=reason, message=message, now=now,
                                                job_name=plan_name))
        return Gate(hold=True)
    summary = parse_plan_summary(termination_message(pods)) if observation.succeeded else None
    if summary is None:
        reason = failure_reason(observation) if observation.failed else reasons.JOB_FAILED
        detail = (event_message_for_failure(plan_name, observation) if observation.failed
                  else f"plan Job {plan_name} succeeded but left no plan summary")
        new = review_status(status, generation=generation, state="stalled", reason=reason,
                            message=f"the plan failed: {detail}", now=now,
                            job_name=plan_name)
        if await hooks.write(status, new):
            hooks.event("Warning", reason, new["message"])
        return Gate(hold=True)
    full, config_map = await _store_plan(hooks, body, pods, summary.digest, logger)
    decision = decide(review, summary, namespace=namespace, name=name,
                      first_error=first_unaccepted(full))
    plan = plan_status(summary, generation=generation, job_name=plan_name,
                       config_map=config_map, approval=decision.approval,
                       planned_at=rfc3339(now))
    if decision.action == "run":
        await hooks.write(status, {"plan": plan})
        status["plan"] = plan
        logger.info("plan %s (%s): runs", summary.digest, decision.approval)
        return Gate(hold=False, digest=decision.digest)
    state = "stalled" if decision.action == "block" else "pending"
    new = review_status(status, generation=generation, state=state, reason=decision.reason,
                        message=decision.message, now=now, job_name=plan_name,
                        plan=plan)
    if await hooks.write(status, new):
        logger.warning("%s", new["message"])
        hooks.event("Warning" if state == "stalled" else "Normal", decision.reason,
                    new["message"])
    return Gate(hold=True)


async def _store_plan(hooks: Hooks, body: Mapping[str, Any], pods: list[dict[str, Any]],
                      digest: str, logger: kopf.Logger) -> tuple[dict[str, Any] | None, str | None]:
    """The full plan from the plan pod's log, written to the resource's ConfigMap.

    Returns (the plan, the ConfigMap's name), or (None, None) when the log holds no plan with
    ``digest`` (gone, cut, forbidden): the decision needs only the summary.
    """
    meta = body["metadata"]
    pod = last_pod_name(pods)
    try:
        log = await hooks.api.read_pod_log(meta["namespace"], pod, CONTAINER_NAME,
                                           LOG_LIMIT_BYTES) if pod else None
    except KubeError as exc:
        logger.warning("cannot read the plan from pod %s's log: %s", pod, exc)
        return None, None
    text = plan_from_log(log or "", digest)
    if text is None:
        logger.warning("pod %s's log holds no plan with digest %s", pod, digest)
        return None, None
    config_map = plan_config_map(owner=body, plan_text=text, digest=digest,
                                 generation=int(meta.get("generation") or 1))
    full: dict[str, Any] = json.loads(text)
    try:
        await hooks.api.put_config_map(meta["namespace"], config_map)
    except KubeError as exc:  # e.g. RBAC without configmaps: the plan still decides
        logger.warning("cannot write the plan's ConfigMap: %s", exc)
        return full, None
    return full, str(config_map["metadata"]["name"])


# --- drift ------------------------------------------------------------------------------------


def _slot(review: ReviewSpec, now: float) -> int | None:
    return None if review.drift == "AfterMigration" else int(now // review.interval_seconds)


async def after_success(hooks: Hooks, body: Mapping[str, Any], spec: MigrationSpec,
                        review: ReviewSpec | None, status: dict[str, Any],
                        logger: kopf.Logger) -> None:
    """The drift check due for a resource whose current generation is at its target."""
    if review is None or review.drift == "Off" or status.get("phase") != "Succeeded":
        return
    meta = body["metadata"]
    namespace, generation = meta["namespace"], int(meta.get("generation") or 1)
    clock = time.time()
    slot = _slot(review, clock)
    drift_name = review_job_name(meta["name"], str(meta.get("uid") or ""), generation, DRIFT,
                                 slot)
    if (status.get("drift") or {}).get("job") == drift_name:
        if slot is not None:  # the next interval
            hooks.recheck((slot + 1) * review.interval_seconds - clock + 0.5)
        return
    job = await hooks.api.get_job(namespace, drift_name)
    if job is not None and not JobOwner.of(body).owns(job):
        return  # a Job squatting the name is never read; this slot's check does not run
    if job is None:
        manifest = review_job(_migration_job(hooks, body, spec), kind=DRIFT, name=drift_name)
        ttl = manifest["spec"].get("ttlSecondsAfterFinished")
        manifest["spec"]["ttlSecondsAfterFinished"] = min(ttl or DRIFT_JOB_TTL, DRIFT_JOB_TTL)
        _job, created = await hooks.api.create_job(namespace, manifest)
        if created:
            logger.info("created drift Job %s", drift_name)
        return
    pods = [pod for pod in await hooks.api.list_pods(namespace, drift_name)
            if controlled_by(pod, job)]
    observation = observe_job(job, pods)
    if not observation.finished:
        return
    report = parse_drift_report(termination_message(pods))
    failure = None if report else event_message_for_failure(drift_name, observation)
    now = datetime.now(UTC)
    new = drift_status(status, report, review=review, generation=generation,
                       job_name=drift_name, now=now, checked_at=rfc3339(now), failure=failure)
    if await hooks.write(status, new):
        drifted = find_condition(new["conditions"], DRIFTED)
        assert drifted is not None  # drift_status always sets it
        if drifted["status"] != "False":
            logger.warning("%s: %s", drifted["reason"], drifted["message"])
            hooks.event("Warning", drifted["reason"], drifted["message"])
    if slot is not None:
        hooks.recheck((slot + 1) * review.interval_seconds - clock + 0.5)
