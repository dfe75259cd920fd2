"""The migration Job: its deterministic name, its manifest, and what it says when it ends.

Nothing here talks to Kubernetes. :func:`render_job` turns a parsed spec and the operator
settings into a ``batch/v1`` Job dict; the caller creates it (get-or-create by
:func:`job_name`). :func:`observe_job` reads a Job and its pods back: terminal conditions, the
runner's JSON report in the termination message, kubelet waiting reasons.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from umt_migrations.api_names import GROUP
from umt_operator import reasons
from umt_operator.settings import Settings
from umt_operator.spec import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_LOCK_RETRIES_COUNT,
    DEFAULT_STATEMENT_TIMEOUT_MILLISECONDS,
    DEFAULT_STEP_LOCK_TIMEOUT_MILLISECONDS,
    MigrationSpec,
)

CONTAINER_NAME = "migrate"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RUNNER_UID = 10001

LABEL_RESOURCE = f"{GROUP}/schemamigration"
LABEL_GENERATION = f"{GROUP}/generation"
ANNOTATION_TARGET = f"{GROUP}/target-revision"
ANNOTATION_GENERATION = f"{GROUP}/generation"
ANNOTATION_OWNER = f"{GROUP}/owner"
ANNOTATION_OWNER_UID = f"{GROUP}/owner-uid"
ANNOTATION_IMAGE = f"{GROUP}/image"
#: The digest of what the run depends on (``rerun.inputs_digest``), written by the reconciler.
ANNOTATION_INPUTS = f"{GROUP}/inputs"
#: Every Job and pod the operator creates carries it; its watches select on it server-side.
MANAGED_BY = {"app.kubernetes.io/managed-by": "umt-schema-operator"}
MANAGED_BY_SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED_BY.items())
#: The labels the Job controller puts on a Job's pods, newest name first.
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

#: Requests and limits used when the spec sets no ``job.resources``.
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
TMP_SIZE_LIMIT = "64Mi"

_SUCCESS_CONDITIONS = ("Complete", "SuccessCriteriaMet")
_FAILURE_CONDITIONS = ("Failed", "FailureTarget")
_MAX_NAME = 63
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def _short_hash(text: str, length: int) -> str:
    """A lowercase base-36 digest of ``text``: stable across processes and Python versions."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    digits = ""
    while len(digits) < length:
        number, digit = divmod(number, 36)
        digits += "0123456789abcdefghijklmnopqrstuvwxyz"[digit]
    return digits


#: The owner's uid in every Job name, as 13 base-36 characters of a SHA-256 digest: 64 bits
#: (36**13 > 2**64, so no two digests share a rendering). Two resources get the same Job name
#: only when their uids' 64-bit digests collide: among n resources of one namespace that chance
#: is at most n*(n-1)/2 / 2**64, about 2.7e-8 for a million resources. Jobs are read only when
#: their owner-uid annotation is the owner's anyway (:func:`owned_by`); the name keeps two
#: instances (a resource deleted and re-created under the same name) from meeting at all.
UID_HASH_LENGTH = 13
FALLBACK_SUFFIX = "-prev"


def job_name(resource_name: str, generation: int, uid: str, *, fallback: bool = False) -> str:
    """The Job of one generation of one resource instance: ``<name>-<generation>-<uid hash>``.

    The same resource (same uid) and generation always give the same name, so a restart finds
    the Job it created instead of launching another; a re-created resource (new uid) gets a
    name of its own. ``fallback`` names the rerun of a downgrade with the image that applied
    the current revision (``…-prev``): it keeps the hash too. A DNS-1123 label of at most 63
    characters (the Job controller copies it into a pod label): long names are cut, never the
    generation or the hash.
    """
    suffix = f"-{generation}-{_short_hash(uid, UID_HASH_LENGTH)}"
    if fallback:
        suffix += FALLBACK_SUFFIX
    base = _NOT_LABEL_CHARS.sub("-", resource_name.lower()).strip("-") or "smig"
    return base[: _MAX_NAME - len(suffix)].rstrip("-") + suffix


def owned_by(job: Mapping[str, Any], namespace: str, uid: str) -> bool:
    """Whether ``job`` belongs to the resource instance (``namespace``, ``uid``).

    A Job is read, adopted or waited for only when it lives in its owner's namespace and its
    owner-uid annotation is the owner's uid. Its name and its ``owner`` annotation prove
    nothing: anyone who may create a Job in any watched namespace can copy them.
    """
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return bool(uid) and meta.get("namespace") == namespace \
        and annotations.get(ANNOTATION_OWNER_UID) == uid


@dataclass(frozen=True)
class JobOwner:
    """One instance of a ``SchemaMigration`` at one generation: whose Jobs are whose."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> JobOwner:
        meta = body["metadata"]
        return cls(namespace=str(meta["namespace"]), name=str(meta["name"]),
                   uid=str(meta.get("uid") or ""), generation=int(meta.get("generation") or 1))

    @property
    def job_name(self) -> str:
        """This generation's Job."""
        return job_name(self.name, self.generation, self.uid)

    @property
    def fallback_job_name(self) -> str:
        """This generation's rerun with the image that applied the current revision."""
        return job_name(self.name, self.generation, self.uid, fallback=True)

    @property
    def job_names(self) -> tuple[str, str]:
        return self.job_name, self.fallback_job_name

    def owns(self, job: Mapping[str, Any]) -> bool:
        return owned_by(job, self.namespace, self.uid)


def controlled_by(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether ``pod`` was created by ``job`` (its controller owner reference is that Job)."""
    uid = (job.get("metadata") or {}).get("uid")
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(ref.get("controller") and ref.get("uid") == uid for ref in refs)


def label_value(text: str) -> str:
    """``text`` as a valid label value: kept when it fits, else cut and suffixed with a hash."""
    if len(text) <= _MAX_NAME:
        return text
    return text[: _MAX_NAME - 9].rstrip("-.") + "-" + _short_hash(text, 8)


def job_labels(resource_name: str, generation: int) -> dict[str, str]:
    """Labels of the Job and its pod; select a resource's Jobs with :func:`resource_selector`."""
    instance = label_value(resource_name)
    return {
        "app.kubernetes.io/name": "umt-migrations",
        "app.kubernetes.io/component": "schema-migration",
        **MANAGED_BY,
        "app.kubernetes.io/instance": instance,
        LABEL_RESOURCE: instance,
        LABEL_GENERATION: str(generation),
    }


def resource_selector(resource_name: str) -> str:
    """A label selector matching every Job rendered for ``resource_name``."""
    return f"{LABEL_RESOURCE}={label_value(resource_name)}"


def runner_args(spec: MigrationSpec, settings: Settings) -> list[str]:
    """Arguments of ``umt-migrations`` in the Job's container."""
    args = [
        "migrate",
        "--to",
        spec.target_revision,
        "--config",
        spec.alembic_config or settings.alembic_config,
        "--lock-timeout",
        str(settings.lock_timeout_seconds),
    ]
    if spec.allow_downgrade:
        args.append("--allow-downgrade")
    return args + safety_args(spec, settings)


def safety_args(spec: MigrationSpec, settings: Settings) -> list[str]:
    """``--step-lock-timeout`` and friends: the spec's ``safety``, else the operator's defaults.

    A value equal to the runner's own default is left out, so an image whose runner predates
    these options (a downgrade's fallback to an older image, say) still runs with defaults.
    """
    safety = spec.safety
    chosen = {
        "--step-lock-timeout": _milliseconds(_first(
            safety.step_lock_timeout_milliseconds, settings.step_lock_timeout_milliseconds)),
        "--statement-timeout": _milliseconds(_first(
            safety.statement_timeout_milliseconds, settings.statement_timeout_milliseconds)),
        "--lock-retries": str(_first(safety.lock_retries, settings.lock_retries)),
        "--connect-timeout": str(_first(
            safety.connect_timeout_seconds, settings.connect_timeout_seconds)),
    }
    args: list[str] = []
    for option, value in chosen.items():
        if value != _RUNNER_DEFAULTS[option]:
            args += [option, value]
    return args


def _milliseconds(value: int) -> str:
    """Milliseconds as the runner's seconds: ``1500`` -> ``1.5``, ``2000`` -> ``2``."""
    return f"{value / 1000:g}"


#: What the runner does when an option is not given (``umt-migrations migrate --help``).
_RUNNER_DEFAULTS = {
    "--step-lock-timeout": _milliseconds(DEFAULT_STEP_LOCK_TIMEOUT_MILLISECONDS),
    "--statement-timeout": _milliseconds(DEFAULT_STATEMENT_TIMEOUT_MILLISECONDS),
    "--lock-retries": str(DEFAULT_LOCK_RETRIES_COUNT),
    "--connect-timeout": str(DEFAULT_CONNECT_TIMEOUT_SECONDS),
}


def _container(spec: MigrationSpec, settings: Settings, image: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {
            "name": "DATABASE_URL",
            # The operator never reads the Secret: the kubelet hands the URL to the pod.
            "valueFrom": {
                "secretKeyRef": {"name": spec.database.name, "key": spec.database.key}
            },
        },
        {"name": "TERMINATION_MESSAGE_PATH", "value": TERMINATION_MESSAGE_PATH},
        *spec.job.env,
    ]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "command": [settings.runner_command],
        "args": runner_args(spec, settings),
        "env": env,
        "resources": spec.job.resources or DEFAULT_RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pull_policy = spec.image_pull_policy or settings.image_pull_policy
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    if spec.alembic_working_dir:  # where a relative script_location is resolved from first
        container["workingDir"] = spec.alembic_working_dir
    return container


def _pod_spec(spec: MigrationSpec, settings: Settings, image: str) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, settings, image)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}}],
    }
    account = spec.job.service_account_name or settings.job_service_account
    if account:
        pod["serviceAccountName"] = account
    if spec.job.node_selector:
        pod["nodeSelector"] = dict(spec.job.node_selector)
    if spec.job.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.job.tolerations]
    return pod


def _job_spec(spec: MigrationSpec, settings: Settings) -> dict[str, Any]:
    options = spec.job
    return {
        "backoffLimit": _first(options.backoff_limit, settings.job_backoff_limit),
        "activeDeadlineSeconds": _first(
            options.active_deadline_seconds, settings.job_active_deadline_seconds
        ),
        "ttlSecondsAfterFinished": _first(
            options.ttl_seconds_after_finished, settings.job_ttl_seconds_after_finished
        ),
        # Exit 2 (invalid request) and 3 (a migration failed) will fail again: stop at once.
        # Exit 1 (transient) counts against backoffLimit. Evictions and preemptions don't count.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [2, 3],
                    },
                },
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                },
            ]
        },
    }


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def render_job(
    *,
    name: str,
    namespace: str,
    uid: str,
    generation: int,
    spec: MigrationSpec,
    settings: Settings,
    image: str,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that moves the database of resource ``name`` to its target.

    Deliberately **no ownerReferences**: deleting an owner garbage-collects its Jobs and kills
    their pods, and a migration killed halfway can leave a database (MySQL, SQLite: DDL is not
    transactional) between two revisions. Deleting a ``SchemaMigration`` must never touch the
    database, so the Job records its owner in labels and annotations and finishes on its own;
    ``ttlSecondsAfterFinished`` cleans it up afterwards.
    """
    labels = job_labels(name, generation)
    annotations = {
        ANNOTATION_TARGET: spec.target_revision,
        ANNOTATION_GENERATION: str(generation),
        ANNOTATION_OWNER: f"{namespace}/{name}",
        ANNOTATION_OWNER_UID: uid,
        ANNOTATION_IMAGE: image,
    }
    # The pod's own labels win over the user's: selectors and status depend on them.
    pod_labels = {**spec.job.pod_labels, **labels}
    pod_annotations = {**spec.job.pod_annotations, ANNOTATION_TARGET: spec.target_revision}
    job_spec = _job_spec(spec, settings)
    job_spec["template"] = {
        "metadata": {"labels": pod_labels, "annotations": pod_annotations},
        "spec": _pod_spec(spec, settings, image),
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name, generation, uid),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }
    return copy.deepcopy(job)  # shares nothing with the spec or the module defaults


# --- observing a Job --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerReport:
    """The runner's JSON report, as written to the termination message."""

    ok: bool
    direction: str | None = None
    from_revision: str | None = None
    to_revision: str | None = None
    target_revision: str | None = None
    applied: tuple[str, ...] = ()
    duration_seconds: float | None = None
    error_reason: str | None = None
    error_message: str | None = None
    error_revision: str | None = None  #: the revision the error is about, when there is one
    #: A LockTimeout's tries within the pod, and the session that held the lock (``error.attempts``
    #: and ``error.blocker`` of the report; None from a runner that does not write them).
    error_attempts: int | None = None
    error_blocker: str | None = None

    @property
    def current_revision_unknown(self) -> bool:
        """The image lacks the database's own revision (the database is ahead of it)."""
        return bool(
            self.error_reason == reasons.REVISION_NOT_FOUND
            and self.error_revision
            and self.error_revision == self.from_revision
        )


def _revision(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or None
    return str(value) if value not in (None, "") else None


def parse_report(text: str | None) -> RunnerReport | None:
    """The report in a termination message, or None when the text is not a runner report."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or "ok" not in data:
        return None
    raw_error, raw_applied = data.get("error"), data.get("applied")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    duration = data.get("durationSeconds")
    applied: list[Any] = raw_applied if isinstance(raw_applied, list) else []
    return RunnerReport(
        ok=data.get("ok") is True,
        direction=data.get("direction") if isinstance(data.get("direction"), str) else None,
        from_revision=_revision(data.get("fromRevision")),
        to_revision=_revision(data.get("toRevision")),
        target_revision=_revision(data.get("targetRevision")),
        applied=tuple(str(step) for step in applied),
        duration_seconds=float(duration) if isinstance(duration, (int, float)) else None,
        error_reason=str(error["reason"]) if error.get("reason") else None,
        error_message=str(error["message"]) if error.get("message") else None,
        error_revision=str(error["revision"]) if error.get("revision") else None,
        error_attempts=_count(error.get("attempts")),
        error_blocker=str(error["blocker"]) if error.get("blocker") else None,
    )


def _count(value: Any) -> int | None:
    """A positive whole number from a report field (the runner writes ``attempts`` as text)."""
    try:
        number = int(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


@dataclass(frozen=True)
class PodProblem:
    """Why a pod cannot start, as the kubelet says it (missing Secret, image pull failure)."""

    reason: str
    message: str


@dataclass(frozen=True)
class PodRefusal:
    """The Job controller could not create the Job's pod: the API server's message (from
    its newest ``FailedCreate`` Event) and when it said so."""

    message: str
    time: str = ""

    @property
    def may_clear(self) -> bool:
        """An exceeded ResourceQuota clears when other pods end; other refusals need a change."""
        return "exceeded quota" in self.message


#: How the Job controller words a refusal (``Error creating: <the server's message>``).
_REFUSAL_PREFIX = "Error creating: "


def refusal_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a ``FailedCreate`` Event: the Job's uid, message, time."""
    ref = event.get("involvedObject") or {}
    time = event.get("lastTimestamp") or event.get("eventTime") or \
        event.get("firstTimestamp") or ""
    return {"uid": ref.get("uid"), "message": str(event.get("message") or ""), "time": str(time)}


def pod_refusal(job: Mapping[str, Any], refusals: Sequence[Mapping[str, Any]]
                ) -> PodRefusal | None:
    """The newest refusal recorded for this Job (by uid), worded without the pod's name.

    Each retry names a new pod (``<job>-<5 characters>``): the name is replaced by
    ``<job>-…`` so that the same refusal reads the same every time.
    """
    uid = (job.get("metadata") or {}).get("uid")
    mine = [r for r in refusals if uid and r.get("uid") == uid]
    if not mine:
        return None
    newest = max(mine, key=lambda r: str(r.get("time") or ""))
    name = job["metadata"]["name"]
    message = str(newest.get("message") or "").removeprefix(_REFUSAL_PREFIX)
    message = re.sub(rf'"{re.escape(name)}-[a-z0-9]+"', f'"{name}-…"', message)
    return PodRefusal(message=message, time=str(newest.get("time") or ""))


@dataclass(frozen=True)
class JobObservation:
    """What a Job and its pods say about one migration run."""

    succeeded: bool = False
    failed: bool = False
    failure_reason: str | None = None
    failure_message: str | None = None
    running: bool = False
    failed_attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    report: RunnerReport | None = None
    log_tail: str | None = None
    exit_code: int | None = None
    pod_problem: PodProblem | None = None
    pending_message: str | None = None
    #: When the scheduler last said no node fits (``PodScheduled=False``), RFC 3339.
    unschedulable_since: str | None = None
    #: Whether a runner container ever ran (running now, or ended after starting): a Job whose
    #: pods never ran one has not touched the database.
    container_ran: bool = False
    #: The newest pod's runner has ended while the Job has no verdict yet (the Job controller
    #: is about to record it, or to start another attempt).
    latest_pod_ended: bool = False
    #: The cluster refuses to create the Job's pod (newer than any pod it created).
    pod_refused: PodRefusal | None = None

    @property
    def finished(self) -> bool:
        """True once the Job succeeded or failed for good."""
        return self.succeeded or self.failed


def _true_condition(job: Mapping[str, Any], types: Sequence[str]) -> dict[str, Any] | None:
    conditions = (job.get("status") or {}).get("conditions") or []
    return next(
        (dict(c) for c in conditions if c.get("type") in types and c.get("status") == "True"), None
    )


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    named = [s for s in statuses if s.get("name") == CONTAINER_NAME]
    first: Mapping[str, Any] = (named or statuses or [{}])[0]
    return first


def _terminations(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Terminated states of the runner container, oldest first."""
    found = []
    for pod in pods:
        status = _container_status(pod)
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            if state.get("terminated"):
                found.append(state["terminated"])
                break
    return sorted(found, key=lambda t: str(t.get("finishedAt") or ""))


def job_finished(job: Mapping[str, Any]) -> bool:
    """The Job has its verdict (``Complete``/``Failed`` or the 1.31+ interim conditions)."""
    return _true_condition(job, _SUCCESS_CONDITIONS + _FAILURE_CONDITIONS) is not None


def pod_ended(pod: Mapping[str, Any]) -> bool:
    """The pod's container has terminated (the runner ran and ended, or never started)."""
    return any(
        (c.get("state") or {}).get("terminated")
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def job_name_of(labels: Mapping[str, str]) -> str | None:
    """The name of the Job a pod belongs to, from the Job controller's labels."""
    return next((labels[key] for key in JOB_NAME_LABELS if labels.get(key)), None)


def _pod_problem(pods: Sequence[Mapping[str, Any]]) -> PodProblem | None:
    """The kubelet's reason why the runner container cannot start, newest pod first."""
    for pod in reversed(pods):
        status = _container_status(pod)
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason"), waiting.get("message") or ""
        if reason in reasons.IMAGE_PULL_WAITING_REASONS:
            return PodProblem(reasons.IMAGE_PULL_FAILED, message or reason)
        if reason == reasons.CONFIG_WAITING_REASON:
            kind = reasons.SECRET_NOT_FOUND if "secret" in message.lower() else None
            return PodProblem(kind or reasons.POD_CONFIG_ERROR, message or reason)
        if reason in reasons.START_WAITING_REASONS:
            return PodProblem(reasons.CONTAINER_CANNOT_START, message or reason)
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            ended = state.get("terminated") or {}
            if ended.get("reason") in reasons.START_TERMINATED_REASONS:
                return PodProblem(reasons.CONTAINER_CANNOT_START,
                                  ended.get("message") or ended["reason"])
    return None


def _unschedulable(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ``PodScheduled=False`` condition of a pod no node fits, if any."""
    for pod in pods:
        conditions: list[Mapping[str, Any]] = (pod.get("status") or {}).get("conditions") or []
        for condition in conditions:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return condition
    return None


def _container_ran(pods: Sequence[Mapping[str, Any]]) -> bool:
    for pod in pods:
        status = _container_status(pod)
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            ended = state.get("terminated")
            if state.get("running") or (
                ended and ended.get("reason") not in reasons.START_TERMINATED_REASONS
            ):
                return True
    return False


def _still_refused(refusal: PodRefusal | None, pods: Sequence[Mapping[str, Any]],
                   finished: bool, running: bool) -> PodRefusal | None:
    """``refusal``, unless a pod was created since (the refusal cleared) or the Job is done."""
    if refusal is None or finished or running:
        return None
    newest = max((str(p["metadata"].get("creationTimestamp") or "") for p in pods), default="")
    return refusal if not newest or refusal.time >= newest else None


def observe_job(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                refusal: PodRefusal | None = None) -> JobObservation:
    """Read a Job and the pods it created (the caller selects them by the Job's name), and
    the newest refusal of its pods by the cluster (:func:`pod_refusal`), if any."""
    status = job.get("status") or {}
    success = _true_condition(job, _SUCCESS_CONDITIONS)
    failure = None if success else _true_condition(job, _FAILURE_CONDITIONS)
    terminations = _terminations(pods)
    if success:
        terminations = [t for t in terminations if t.get("exitCode") == 0] or terminations
    last = terminations[-1] if terminations else {}
    text = last.get("message")
    report = parse_report(text)
    running = any((_container_status(pod).get("state") or {}).get("running") for pod in pods)
    unschedulable = None if running else _unschedulable(pods)
    finished_at = (success or failure or {}).get("lastTransitionTime")
    return JobObservation(
        succeeded=success is not None,
        failed=failure is not None,
        failure_reason=(failure or {}).get("reason"),
        failure_message=(failure or {}).get("message"),
        running=running,
        failed_attempts=int(status.get("failed") or 0),
        start_time=status.get("startTime"),
        completion_time=(status.get("completionTime") or finished_at) if finished_at else None,
        report=report,
        log_tail=text if report is None and text else None,
        exit_code=last.get("exitCode"),
        pod_problem=None if running else _pod_problem(pods),
        pending_message=(unschedulable or {}).get("message") or (unschedulable or {}).get("reason"),
        unschedulable_since=(unschedulable or {}).get("lastTransitionTime"),
        container_ran=running or _container_ran(pods),
        latest_pod_ended=bool(pods) and _container_ran(pods[-1:]) and not running,
        pod_refused=_still_refused(refusal, pods, bool(success or failure), running),
    )
