"""Reconcile one SchemaMigration: the pipeline behind the handlers.

    parse the spec ─► this generation's Job (get, or create once nothing else runs) ─►
    observe it and its pods (as last seen by the pod watch) ─► write status (only when it
    changed) ─► events and metrics ─► a re-check later if a pod waits for a node

Idempotent by identity: the Job of a generation has a deterministic name carrying the owner's
uid, so any number of events, restarts or concurrent triggers end with one Job, and a resource
re-created under the same name runs its own. A Job is read, adopted or waited for only when
its namespace and owner-uid annotation are the resource's (:meth:`JobOwner.owns`); nothing a
Job elsewhere says reaches the status. A running Job is never deleted or replaced: a newer
generation waits for it. The database is never contacted here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from umt_operator import reasons, rerun
from umt_operator.events import NORMAL, WARNING, post
from umt_operator.jobs import (
    ANNOTATION_GENERATION,
    ANNOTATION_IMAGE,
    ANNOTATION_INPUTS,
    ANNOTATION_OWNER_UID,
    JobOwner,
    PodRefusal,
    controlled_by,
    job_finished,
    observe_job,
    pod_ended,
    pod_refusal,
    render_job,
    resource_selector,
)
from umt_operator.kube import KubeAPI, KubeError
from umt_operator.metrics import Metrics
from umt_operator.review import parse_review
from umt_operator.review_flow import Hooks, after_success, before_migration
from umt_operator.review_jobs import job_kind, with_plan_digest
from umt_operator.settings import Settings
from umt_operator.spec import InvalidSpec, MigrationSpec, parse_spec
from umt_operator.status import (
    STALLED,
    compute_status,
    event_message_for_failure,
    event_message_for_success,
    find_condition,
    invalid_spec_status,
    stalled_status,
    unschedulable_for,
    waiting_status,
)

FINISHED_PHASES = ("Succeeded", "Failed")
#: Client errors on Job create that are not a refusal of the Job: 409 (it exists: adopted or
#: reported as a conflict) and 429 (throttled: the next event tries again).
_RETRIED_STATUSES = (409, 429)
#: How long a finished Job waits for its pod's last event before reading the pods instead.
POD_EVENT_GRACE = 1.0


@dataclass
class Context:
    """What every reconcile needs; built once at startup and kept in kopf's memo."""

    api: KubeAPI
    settings: Settings
    metrics: Metrics
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    #: Jobs whose end was already announced (events, metrics): several Job events, or a stale
    #: status, must not announce one run twice. Bounded: oldest entries are forgotten.
    announced: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: The pods of the operator's Jobs as last seen by the pod watch, keyed by
    #: ``(namespace, job name)`` (a kopf index; None until a handler hands it over).
    pod_index: Any = None
    #: The Job controller's ``FailedCreate`` Events on the operator's Jobs as last seen,
    #: keyed by ``(namespace, Job name)`` (a kopf index; None until a handler hands it over).
    refusal_index: Any = None
    #: Pending re-checks (a pod waiting for a node), one per resource.
    rechecks: dict[tuple[str, str], asyncio.Task[None]] = field(default_factory=dict)
    #: Wakes a reconcile waiting for a Job's pod event (see :func:`_pods`), per Job.
    pod_events: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def pod_seen(self, namespace: str, job_name: str | None) -> None:
        """The pod watch delivered an event for a pod of ``job_name`` (its index is updated)."""
        event = self.pod_events.pop((namespace, job_name or ""), None)
        if event is not None:
            event.set()

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault((namespace, name), asyncio.Lock())

    def first_announcement(self, key: str, limit: int = 10_000) -> bool:
        """True the first time a finished Job is seen; remembers it."""
        if key in self.announced:
            return False
        self.announced[key] = None
        while len(self.announced) > limit:
            self.announced.popitem(last=False)
        return True


async def reconcile(
    ctx: Context,
    body: Mapping[str, Any],
    logger: kopf.Logger,
    *,
    job: Mapping[str, Any] | None = None,
) -> None:
    """Bring one resource one step closer to its target; safe to call at any time.

    ``job`` is a Job as just seen in a watch event, which spares a read when it is the
    current generation's.
    """
    meta = body["metadata"]
    owner = JobOwner.of(body)
    namespace, generation = owner.namespace, owner.generation
    async with ctx.lock(namespace, owner.name):
        if meta.get("deletionTimestamp"):
            return  # being deleted: the database and any running Job are left alone
        status = dict(body.get("status") or {})
        try:
            spec = parse_spec(body.get("spec"))
            review = parse_review(body.get("spec"))
        except InvalidSpec as exc:
            new_status = invalid_spec_status(generation, status, str(exc))
            if await _write(ctx, body, status, new_status, logger):
                logger.error("invalid spec: %s", exc)
                post(body, WARNING, reasons.INVALID_SPEC, str(exc))
            return
        if _concluded(status, owner) or rerun.skipped(status, generation):
            await after_success(_hooks(ctx, body, logger), body, spec, review, status, logger)
            return
        try:
            _check_policy(ctx, spec)
            found = await _current_job(ctx, owner, status, job)
            if found is None:
                blocker = await _earlier_job_running(ctx, owner, status)
                if blocker is not None and \
                        await _replaced_if_never_started(ctx, body, blocker, logger):
                    blocker = None
                if blocker is not None:
                    waiting = waiting_status(status, generation, blocker)
                    if await _write(ctx, body, status, waiting, logger):
                        logger.info(waiting["message"])
                    return
                if await _unchanged_since_success(ctx, body, spec, status, logger):
                    return  # nothing the run depends on changed: Ready without a Job (rerun.py)
                digest = None
                if review is not None:  # plan first; run only the plan, once it may run
                    gate = await before_migration(_hooks(ctx, body, logger), body, spec,
                                                  review, status, logger)
                    if gate.hold:
                        return
                    digest = gate.digest
                found = await _create_job(ctx, body, spec, owner.job_name, _image(ctx, spec),
                                          logger, plan_digest=digest)
            pods = await _pods(ctx, namespace, found)
            job, job_name, pods = await _fallback_for_downgrade(ctx, body, spec, dict(found),
                                                                pods, logger)
        except JobRefusedError as refusal:
            await _report_refusal(ctx, body, status, refusal, logger)
            return
        now = datetime.now(UTC)
        new_status = compute_status(
            generation=generation,
            previous_status=status,
            job_name=job_name,
            job=job,
            pods=pods,
            spec_target=spec.target_revision,
            image=job["metadata"].get("annotations", {}).get(ANNOTATION_IMAGE, _image(ctx, spec)),
            now=now,
            unschedulable_after=ctx.settings.unschedulable_seconds,
            refusal=_refusal(ctx, job),
        )
        if await _write(ctx, body, status, new_status, logger):
            _log_pod_trouble(body, status, new_status, logger)
        _observe_for_metrics(ctx, body, job, pods, status, new_status, logger)
        if new_status["phase"] == "Pending":  # only a pod not yet started can wait for a node
            _recheck_when_unschedulable(ctx, body, job, pods, now, logger)


def _check_policy(ctx: Context, spec: MigrationSpec, image: str | None = None) -> None:
    """Refuse, with no Job, what the operator's tenancy policy does not allow."""
    policy = ctx.settings.policy
    problem = policy.image_problem(image or _image(ctx, spec)) or \
        policy.service_account_problem(spec.job.service_account_name)
    if problem is not None:
        raise JobRefusedError(reasons.POLICY_DENIED, problem)


class JobRefusedError(Exception):
    """This generation's Job cannot be had: the status says why (``reason``), in one line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def _report_refusal(ctx: Context, body: Mapping[str, Any], status: Mapping[str, Any],
                          refusal: JobRefusedError, logger: kopf.Logger) -> None:
    """``Stalled`` with the refusal's reason; a Warning Event and an ERROR line when new."""
    generation = int(body["metadata"].get("generation") or 1)
    new_status = stalled_status(generation, status, refusal.reason, refusal.message)
    if await _write(ctx, body, status, new_status, logger):
        logger.error("%s: %s", refusal.reason, refusal.message)
        post(body, WARNING, refusal.reason, refusal.message)


#: The Job metadata the pipeline reads (its name, and the owner, image and generation the
#: operator wrote into its annotations); the pod template and the rest are not kept.
_JOB_METADATA = ("name", "namespace", "uid", "creationTimestamp", "annotations")


def slim_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a Job: its identity, our annotations and its status."""
    meta = job["metadata"]
    return {"metadata": {k: meta[k] for k in _JOB_METADATA if k in meta},
            "status": dict(job.get("status") or {})}


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a pod: identity, phase, conditions and container states."""
    meta = pod["metadata"]
    status = pod.get("status") or {}
    return {
        "metadata": {
            **{k: meta.get(k) for k in ("name", "namespace", "uid", "creationTimestamp")},
            # the Job controller's reference: only a pod its Job created is read for that Job
            "ownerReferences": [{"uid": ref.get("uid"), "controller": True}
                                for ref in meta.get("ownerReferences") or []
                                if ref.get("controller")],
        },
        "status": {
            "phase": status.get("phase"),
            "conditions": list(status.get("conditions") or []),
            "containerStatuses": [
                {k: c.get(k) for k in ("name", "state", "lastState", "ready", "restartCount")}
                for c in status.get("containerStatuses") or []
            ],
        },
    }


async def _pods(ctx: Context, namespace: str, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Job's pods, oldest first: as last seen by the pod watch, read only when needed.

    A finished Job whose pods, as seen, show no ended container yet (the pod's last event is
    still on its way) is the one case worth a read: the runner's report is in that state.
    """
    if not job.get("status"):
        return []
    name = job["metadata"]["name"]
    seen = _indexed_pods(ctx, namespace, job)
    if seen is not None and job_finished(job) and not any(pod_ended(pod) for pod in seen):
        # The Job's verdict came in before its pod's last event (two watches, no order
        # between them): that event is a moment away; wait for it rather than read.
        event = ctx.pod_events.setdefault((namespace, name), asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), POD_EVENT_GRACE)
        seen = _indexed_pods(ctx, namespace, job)
    if seen is None or (job_finished(job) and not any(pod_ended(pod) for pod in seen)):
        seen = [pod for pod in await ctx.api.list_pods(namespace, name) if controlled_by(pod, job)]
    return sorted(seen, key=lambda pod: str(pod["metadata"].get("creationTimestamp") or ""))


def _refusal(ctx: Context, job: Mapping[str, Any]) -> PodRefusal | None:
    """The newest refusal of ``job``'s pods by the cluster, as the Event watch last saw it."""
    if ctx.refusal_index is None:
        return None
    meta = job["metadata"]
    return pod_refusal(job, list(ctx.refusal_index.get((meta["namespace"], meta["name"]), [])))


def _indexed_pods(ctx: Context, namespace: str, job: Mapping[str, Any]
                  ) -> list[dict[str, Any]] | None:
    """The pods the watch saw for ``job``: only those its Job controller created."""
    if ctx.pod_index is None:
        return None
    pods = ctx.pod_index.get((namespace, job["metadata"]["name"]), [])
    return [dict(pod) for pod in pods if controlled_by(pod, job)]


def _log_pod_trouble(body: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any],
                     logger: kopf.Logger) -> None:
    """A WARNING and a Warning Event when a pod-level problem is first reported (or changes)."""
    stalled = find_condition(new.get("conditions") or [], STALLED) or {}
    if new.get("phase") != "Pending" or stalled.get("status") != "True":
        return
    if old.get("message") != new.get("message"):
        reason, message = str(stalled.get("reason")), str(new.get("message"))
        logger.warning("%s: %s", reason, message)
        post(body, WARNING, reason, message)


def _recheck_when_unschedulable(
    ctx: Context, body: Mapping[str, Any], job: Mapping[str, Any],
    pods: list[dict[str, Any]], now: datetime, logger: kopf.Logger,
) -> None:
    """A pod waiting for a node changes nothing for a while: look again at the threshold."""
    waited = unschedulable_for(observe_job(job, pods), now)
    threshold = ctx.settings.unschedulable_seconds
    if waited is None or waited >= threshold:
        return
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    if key in ctx.rechecks and not ctx.rechecks[key].done():
        return

    async def later() -> None:
        await asyncio.sleep(threshold - waited + 0.5)
        current = await ctx.api.get_schema_migration(*key)
        if current is not None:
            await reconcile(ctx, current, logger)

    ctx.rechecks[key] = asyncio.get_running_loop().create_task(later())


async def _current_job(
    ctx: Context,
    owner: JobOwner,
    status: Mapping[str, Any],
    seen: Mapping[str, Any] | None,
) -> Mapping[str, Any] | None:
    """This generation's Job: as just seen, else read, else None (nothing created yet).

    Only a Job the resource instance owns counts (:meth:`JobOwner.owns`): a Job of that name
    owned by anything else is not read here, and creating ours then reports the conflict.
    Before the first status of a generation there is nothing to read, unless an earlier
    operator process created the Job and stopped before writing status; creating is then
    idempotent (409 returns the existing Job, checked the same way), so skipping the read is
    safe.
    """
    if seen is not None and seen["metadata"]["name"] == owner.job_name and owner.owns(seen):
        return seen
    if status.get("jobName") not in owner.job_names and owner.generation <= 1:
        return None
    job = await ctx.api.get_job(owner.namespace, owner.job_name)
    return job if job is not None and owner.owns(job) else None


def worth_reconciling(event_type: str | None, body: Mapping[str, Any]) -> bool:
    """Skip the echo of our own status writes while a Job runs: its events drive progress.

    A MODIFIED event whose status already describes the current generation's Job in progress
    changes nothing we act on (a spec change bumps the generation, so it is never skipped).
    The initial listing (no event type) is always reconciled, so a restarted operator
    catches up with Jobs that ended while it was down.
    """
    if event_type != "MODIFIED":
        return True
    status = body.get("status") or {}
    owner = JobOwner.of(body)
    return not (
        status.get("observedGeneration") == owner.generation
        and status.get("jobName") in owner.job_names
        and status.get("phase") in ("Pending", "Running")
        and (find_condition(status.get("conditions") or [], STALLED) or {}).get("status") != "True"
    )


def job_worth_reconciling(event_type: str | None, job: Mapping[str, Any]) -> bool:
    """A Job just created has no status yet: nothing to report beyond what creation wrote."""
    return event_type != "ADDED" or bool(job.get("status"))


def _concluded(status: Mapping[str, Any], owner: JobOwner) -> bool:
    """This generation's run already ended and was recorded: nothing left to do."""
    return (
        status.get("observedGeneration") == owner.generation
        and status.get("jobName") in owner.job_names
        and status.get("phase") in FINISHED_PHASES
    )


def _hooks(ctx: Context, body: Mapping[str, Any], logger: kopf.Logger) -> Hooks:
    """What the review steps (review_flow.py) may do through the pipeline."""
    meta = body["metadata"]
    key = (meta["namespace"], f"{meta['name']}#review")

    async def write(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        return await _write(ctx, body, old, new, logger)

    def recheck(delay: float) -> None:
        if key in ctx.rechecks and not ctx.rechecks[key].done():
            return

        async def later() -> None:
            await asyncio.sleep(max(delay, 0.5))
            current = await ctx.api.get_schema_migration(meta["namespace"], meta["name"])
            if current is not None:
                await reconcile(ctx, current, logger)

        ctx.rechecks[key] = asyncio.get_running_loop().create_task(later())

    return Hooks(api=ctx.api, settings=ctx.settings, write=write,
                 event=lambda type_, reason, message: post(body, type_, reason, message),
                 recheck=recheck)


def _image(ctx: Context, spec: MigrationSpec) -> str:
    return spec.image or ctx.settings.default_image


async def _create_job(
    ctx: Context,
    body: Mapping[str, Any],
    spec: MigrationSpec,
    job_name: str,
    image: str,
    logger: kopf.Logger,
    *,
    plan_digest: str | None = None,
) -> dict[str, Any]:
    meta = body["metadata"]
    manifest = render_job(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 1),
        spec=spec,
        settings=ctx.settings,
        image=image,
    )
    manifest["metadata"]["name"] = job_name
    if plan_digest is not None:  # the runner refuses (PlanChanged) any other plan
        manifest = with_plan_digest(manifest, plan_digest)
    # What this run depends on, so that a later generation with the same inputs needs no Job.
    manifest["metadata"]["annotations"][ANNOTATION_INPUTS] = rerun.inputs_digest(
        spec, ctx.settings, meta.get("uid", ""), _image(ctx, spec))
    try:
        job, created = await ctx.api.create_job(meta["namespace"], manifest)
    except KubeError as exc:
        if exc.status in _RETRIED_STATUSES or not 400 <= exc.status < 500:
            raise
        raise JobRefusedError(reasons.JOB_REJECTED, (
            f"the API server refused Job {job_name} ({exc.status}): {exc.message}; fix the "
            "spec (or what the cluster requires of Jobs in this namespace)")) from exc
    if created:
        ctx.metrics.jobs_created.inc()
        message = f"created Job {job_name} to migrate to {spec.target_revision} with {image}"
        logger.info(message)
        post(body, NORMAL, reasons.JOB_CREATED, message)
    elif not JobOwner.of(body).owns(job):  # 409: the name is taken by a Job that is not ours
        raise JobRefusedError(reasons.JOB_CONFLICT, _conflict_message(job, meta))
    return job


async def _unchanged_since_success(
    ctx: Context, body: Mapping[str, Any], spec: MigrationSpec, status: Mapping[str, Any],
    logger: kopf.Logger,
) -> bool:
    """Report ``Ready`` without a Job when nothing the run depends on changed since this
    instance's last success (``umt_operator.rerun``); True when it did."""
    meta = body["metadata"]
    uid = str(meta.get("uid") or "")
    digest = rerun.inputs_digest(spec, ctx.settings, uid, _image(ctx, spec))
    success = rerun.unchanged_since(status, digest)
    if success is None:
        return False
    # No Job of this instance may have started since (its status write could have been lost).
    for job in await ctx.api.list_jobs(meta["namespace"], resource_selector(meta["name"])):
        annotations = job["metadata"].get("annotations") or {}
        started = str(annotations.get(ANNOTATION_GENERATION) or "0")
        if annotations.get(ANNOTATION_OWNER_UID) == uid and \
                (not started.isdigit() or int(started) > int(success["generation"])):
            return False
    generation = int(meta.get("generation") or 1)
    new_status = rerun.unchanged_status(status, generation, success, datetime.now(UTC))
    if await _write(ctx, body, status, new_status, logger):
        logger.info(new_status["message"])
        post(body, NORMAL, reasons.INPUTS_UNCHANGED, new_status["message"])
    return True


def _conflict_message(job: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    found = (job.get("metadata") or {}).get("annotations") or {}
    return (f"a Job named {job['metadata']['name']} already exists in namespace "
            f"{meta['namespace']} and does not belong to this resource (its owner-uid is "
            f"{found.get(ANNOTATION_OWNER_UID) or 'missing'}, this resource's is "
            f"{meta.get('uid')}); it is ignored: delete it, or re-create this resource")


async def _earlier_job_running(
    ctx: Context, owner: JobOwner, status: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Another Job of this resource instance (an earlier generation's) still running, if any."""
    if owner.generation <= 1 and not status.get("jobName"):
        return None  # a new resource has no other Jobs (a status naming one: an older operator's)
    jobs = await ctx.api.list_jobs(owner.namespace, resource_selector(owner.name))
    for job in jobs:
        if job["metadata"]["name"] in owner.job_names or job_kind(job) != "migrate" \
                or not owner.owns(job):
            continue
        if not observe_job(job, []).finished:
            return job
    return None


async def _replaced_if_never_started(
    ctx: Context, body: Mapping[str, Any], blocker: Mapping[str, Any], logger: kopf.Logger
) -> bool:
    """Delete an earlier generation's Job whose pod is stuck before its container ever ran.

    Such a Job never touched the database (its runner never started), and it would otherwise
    hold the new generation back until its deadline. A Job whose runner ran, or whose pod is
    merely starting, is never touched: the new generation waits for it.
    """
    namespace = body["metadata"]["namespace"]
    observation = observe_job(blocker, await _pods(ctx, namespace, blocker),
                              _refusal(ctx, blocker))
    stuck = observation.pod_problem or observation.pending_message or observation.pod_refused
    if observation.container_ran or not stuck:
        return False
    name = blocker["metadata"]["name"]
    why = observation.pod_problem.reason if observation.pod_problem else \
        reasons.POD_REJECTED if observation.pod_refused else reasons.UNSCHEDULABLE
    await ctx.api.delete_job(namespace, name)
    message = (f"deleted Job {name} of an earlier generation: its pod never started ({why}), "
               "so it never touched the database")
    logger.info(message)
    post(body, NORMAL, reasons.JOB_REPLACED, message)
    return True


async def _fallback_for_downgrade(
    ctx: Context,
    body: Mapping[str, Any],
    spec: MigrationSpec,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    logger: kopf.Logger,
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """Rerun with ``appliedImage`` when the requested image doesn't know the database's revision.

    A downgrade needs the scripts of the revision the database is at, which only the image that
    migrated it there is sure to have. This happens at most once per generation, under a
    deterministic name, and only when downgrades are allowed.
    """
    name = job["metadata"]["name"]
    status = body.get("status") or {}
    applied_image = status.get("appliedImage")
    used_image = (job["metadata"].get("annotations") or {}).get(ANNOTATION_IMAGE)
    if not (spec.allow_downgrade and applied_image and applied_image != used_image):
        return job, name, pods
    observation = observe_job(job, pods)
    report = observation.report
    if not (observation.failed and report and report.current_revision_unknown):
        return job, name, pods
    owner = JobOwner.of(body)
    fallback_name = owner.fallback_job_name
    fallback = await ctx.api.get_job(owner.namespace, fallback_name)
    if fallback is not None and not owner.owns(fallback):
        raise JobRefusedError(reasons.JOB_CONFLICT, _conflict_message(fallback, body["metadata"]))
    if fallback is None:
        _check_policy(ctx, spec, applied_image)
        logger.info(
            "image %s does not know revision %s; downgrading with %s, which applied it",
            used_image, report.from_revision, applied_image,
        )
        fallback = await _create_job(ctx, body, spec, fallback_name, applied_image, logger)
    pods = await _pods(ctx, owner.namespace, fallback)
    return fallback, fallback_name, pods


async def _write(
    ctx: Context,
    body: Mapping[str, Any],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    logger: kopf.Logger,
) -> bool:
    """Patch the status only when something other than timestamps changed; True if patched."""
    if _comparable(old) == _comparable({**old, **new}):
        return False
    meta = body["metadata"]
    patched = await ctx.api.patch_status(meta["namespace"], meta["name"], new)
    if patched is None:
        logger.debug("resource deleted meanwhile; status not written")
    return patched is not None


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without the fields that change on every computation."""
    result = {k: v for k, v in status.items() if v is not None}
    result["conditions"] = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions") or []
    ]
    return result


def _observe_for_metrics(
    ctx: Context,
    body: Mapping[str, Any],
    job: Mapping[str, Any],
    pods: list[dict[str, Any]],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    logger: kopf.Logger,
) -> None:
    """Events, metrics and a log line when a run ends (once: on the phase transition)."""
    key = f"{job['metadata'].get('namespace')}/{job['metadata']['name']}"
    finished = new.get("phase") in FINISHED_PHASES
    ctx.metrics.job_seen(key, finished=finished)
    if not finished or not ctx.first_announcement(key):
        return
    if old.get("jobName") == new.get("jobName") and old.get("phase") == new.get("phase"):
        return  # announced by an earlier operator process (status already said so)
    observation = observe_job(job, pods)
    report = observation.report
    direction = (report.direction if report else None) or "none"
    seconds = report.duration_seconds if report else None
    if new["phase"] == "Succeeded":
        message = event_message_for_success(report) if report else str(new.get("message"))
        ctx.metrics.run_ended(result="succeeded", direction=direction, reason=reasons.SUCCEEDED,
                              seconds=seconds)
        logger.info(message)
        post(body, NORMAL, reasons.SUCCEEDED, message)
    else:
        stalled = find_condition(new.get("conditions") or [], STALLED) or {}
        reason = stalled.get("reason") or reasons.JOB_FAILED
        message = event_message_for_failure(job["metadata"]["name"], observation)
        ctx.metrics.run_ended(result="failed", direction=direction, reason=reason, seconds=seconds)
        logger.error(message)
        post(body, WARNING, reason, message)
