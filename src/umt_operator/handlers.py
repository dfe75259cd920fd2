"""kopf handlers: thin. Each one hands the object to :func:`reconcile` and returns.

Run with ``kopf run -m umt_operator.handlers --all-namespaces`` (or ``python -m umt_operator``,
which takes the namespaces and ports from ``UMT_OPERATOR_*``).

Only event handlers are registered for SchemaMigrations: no finalizer is ever added, so
deleting a resource never waits for the operator (and never touches the database).

Three watches feed the pipeline: SchemaMigrations, the operator's Jobs and their pods (both
selected server-side by the ``app.kubernetes.io/managed-by`` label). A pod that waits (missing
Secret, image pull failure, no node, a container that cannot start) changes the Pod, never the
Job, so pod events are what make such trouble visible within seconds. Indexes keep the last
seen Jobs and pods, so computing a status needs no extra read.
"""

from __future__ import annotations

from typing import Any

import kopf

from umt_migrations.api_names import API_VERSION, GROUP, KIND, PLURAL, VERSION
from umt_migrations.masking import mask_log_records
from umt_operator import leader, reasons
from umt_operator.api_retries import cap_api_backoffs
from umt_operator.events import WARNING, post
from umt_operator.jobs import (
    ANNOTATION_OWNER,
    ANNOTATION_OWNER_UID,
    MANAGED_BY,
    MANAGED_BY_SELECTOR,
    job_name_of,
    pod_ended,
    refusal_of,
)
from umt_operator.kube import KubeAPI
from umt_operator.login import connect
from umt_operator.logs import quiet_kopf
from umt_operator.metrics import Metrics
from umt_operator.reconcile import (
    Context,
    job_worth_reconciling,
    reconcile,
    slim_job,
    slim_pod,
    worth_reconciling,
)
from umt_operator.settings import Settings, SettingsError

#: Warning Events the Job controller posts on a Job whose pod the API server refused.
REFUSALS_SELECTOR = "involvedObject.kind=Job,reason=FailedCreate"


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
                  **_: Any) -> None:
    """Validate the settings, open the API client, serve metrics; all kept in ``memo``."""
    try:
        config = memo.get("settings") or Settings.from_env()
    except SettingsError as exc:  # retrying cannot fix a bad variable: stop the operator
        raise kopf.PermanentError(str(exc)) from None
    info = memo.get("connection") or connect(settings, logger)
    metrics = memo.get("metrics") or Metrics()
    if config.metrics_enabled and not memo.get("metrics"):
        metrics.serve(config.metrics_port)
    memo["context"] = Context(api=KubeAPI(info), settings=config, metrics=metrics)
    if config.leader_election:  # a standby waits here: kopf watches nothing before we return
        memo["leadership"] = await leader.lead(memo["context"].api, config)
    # Events are posted explicitly (kopf.event, each with its reason); log lines never are.
    settings.posting.loggers = False
    # The CRD is installed with the operator and namespaces are named: no need to watch
    # CRDs and Namespaces, so no RBAC to read them either.
    settings.scanning.disabled = True
    # Only the operator's own Jobs and their pods, filtered by the API server (not the client).
    settings.watching.label_selectors["batch", "v1", "jobs"] = MANAGED_BY_SELECTOR
    settings.watching.label_selectors["v1", "pods"] = MANAGED_BY_SELECTOR
    # A returning API server is noticed within seconds, not after kopf's 21 s back-off.
    cap_api_backoffs(settings)
    # The Job controller's refusals to create a pod, and nothing else of the namespace's
    # Events: field selectors an API server offers on Events (involvedObject.kind, reason:
    # pkg/registry/core/event/strategy.go, pkg/apis/core/v1/conversion.go).
    settings.watching.field_selectors["v1", "events"] = REFUSALS_SELECTOR
    quiet_kopf()
    mask_log_records()  # every log line, kopf's own included, without passwords
    # Memory with many resources (each with its Job and pod): list in pages, handle at most 20
    # objects at a time per watch, and let an idle object's worker go after 0.1 s (kopf keeps
    # one per object for 5 s by default), so a restart over thousands of objects stays lean.
    settings.watching.chunk_size = 100
    settings.queueing.worker_limit = 20
    settings.queueing.idle_timeout = 0.1
    logger.info("umt-schema-operator started: default image %s", config.default_image)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> kopf.ConnectionInfo:
    """In-cluster service account, else KUBECONFIG: no client library needed."""
    return connect(settings, logger)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    context: Context | None = memo.get("context")
    if memo.get("leadership") is not None:  # after kopf stopped handling: a standby may lead
        await memo["leadership"].release()
    if context is not None:
        for task in context.rechecks.values():
            task.cancel()
        await context.api.close()


@kopf.on.probe(id="api")
async def api_reachable(memo: kopf.Memo, **_: Any) -> bool:
    """Liveness: the operator's own client is open (kopf checks the watches itself)."""
    return memo.get("context") is not None


# kopf passes each index as a keyword argument its handler protocols do not name (they end in
# **kwargs), so mypy cannot match a handler that declares one: hence the ignores below.
@kopf.on.event(GROUP, VERSION, PLURAL)  # type: ignore[arg-type]
async def schema_migration_event(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: kopf.Logger,
    migration_pods: kopf.Index[Any, dict[str, Any]],
    pod_refusals: kopf.Index[Any, dict[str, Any]], **_: Any
) -> None:
    """Any change to a SchemaMigration (and its initial listing on start)."""
    if type == "DELETED":
        logger.info("deleted; its Job, if any, finishes on its own and the database is untouched")
        memo["context"].locks.pop((body.metadata.namespace, body.metadata.name), None)
        return
    if worth_reconciling(type, body):
        context: Context = memo["context"]
        context.pod_index, context.refusal_index = migration_pods, pod_refusals
        await reconcile(context, body, logger)


@kopf.index(GROUP, VERSION, PLURAL)
async def schema_migrations(namespace: str | None, name: str, body: kopf.Body,
                            **_: Any) -> dict[Any, Any]:
    """The SchemaMigrations as last seen by the watch, so a Job event needs no extra read.

    Whole enough to stand for the object: apiVersion and kind too (an Event's reference).
    """
    meta = {k: v for k, v in body.metadata.items() if k != "managedFields"}
    return {(namespace, name): {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta,
                                "spec": dict(body.spec), "status": dict(body.status)}}


@kopf.index("batch", "v1", "jobs", labels=MANAGED_BY)
async def migration_jobs(namespace: str | None, name: str, body: kopf.Body,
                         **_: Any) -> dict[Any, Any]:
    """The operator's Jobs as last seen, so a pod event finds its Job without a read."""
    return {(namespace, name): slim_job(body)}


@kopf.index("v1", "pods", labels=MANAGED_BY)
async def migration_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body,
                         **_: Any) -> dict[Any, Any] | None:
    """The migration Jobs' pods as last seen (their phase, conditions and container states)."""
    job_name = job_name_of(labels)
    return {(namespace, job_name): slim_pod(body)} if job_name else None


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)  # type: ignore[arg-type]
async def job_event(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: kopf.Logger,
    schema_migrations: kopf.Index[Any, dict[str, Any]],
    migration_pods: kopf.Index[Any, dict[str, Any]],
    pod_refusals: kopf.Index[Any, dict[str, Any]], **_: Any
) -> None:
    """A migration Job changed: recompute its SchemaMigration's status (it may start the next)."""
    if not job_worth_reconciling(type, body):
        return
    memo["context"].refusal_index = pod_refusals
    await _reconcile_owner(memo["context"], dict(body), type == "DELETED", logger,
                           schema_migrations, migration_pods)


@kopf.on.event("v1", "pods", labels=MANAGED_BY)  # type: ignore[arg-type]
async def pod_event(
    body: kopf.Body, labels: kopf.Labels, namespace: str, type: str | None, memo: kopf.Memo,
    logger: kopf.Logger, schema_migrations: kopf.Index[Any, dict[str, Any]],
    migration_jobs: kopf.Index[Any, dict[str, Any]],
    migration_pods: kopf.Index[Any, dict[str, Any]],
    pod_refusals: kopf.Index[Any, dict[str, Any]], **_: Any
) -> None:
    """A migration pod changed (scheduled, waiting, running, ended): report it at once.

    A pod whose runner has ended changes the Job's counts, so the Job's own event follows with
    the verdict: that event, not this one, reconciles (one status write, not two).
    """
    job_name = job_name_of(labels)
    context: Context = memo["context"]
    context.refusal_index = pod_refusals
    context.pod_seen(namespace, job_name)
    job = _first(migration_jobs.get((namespace, job_name))) if job_name else None
    if job is None or type == "DELETED" or pod_ended(body):
        return  # not a Job of ours (yet), a pod going away, or the Job's verdict is coming
    await _reconcile_owner(memo["context"], dict(job), False, logger,
                           schema_migrations, migration_pods)


@kopf.index("v1", "events")
async def pod_refusals(namespace: str | None, body: kopf.Body,
                       **_: Any) -> dict[Any, Any] | None:
    """The Job controller's FailedCreate Events (selected server-side), by Job."""
    job_name = (body.get("involvedObject") or {}).get("name")
    return {(namespace, job_name): refusal_of(body)} if job_name else None


@kopf.on.event("v1", "events")  # type: ignore[arg-type]
async def pod_refused(
    body: kopf.Body, namespace: str | None, type: str | None, memo: kopf.Memo,
    logger: kopf.Logger, schema_migrations: kopf.Index[Any, dict[str, Any]],
    migration_jobs: kopf.Index[Any, dict[str, Any]],
    migration_pods: kopf.Index[Any, dict[str, Any]],
    pod_refusals: kopf.Index[Any, dict[str, Any]], **_: Any
) -> None:
    """The cluster refused to create the pod of a Job: report it now, not at the deadline.

    Only a Job of ours counts: one in the operator's index, in the Event's namespace, with
    the uid the Event names.
    """
    ref = body.get("involvedObject") or {}
    job = _first(migration_jobs.get((namespace, ref.get("name"))))
    if type == "DELETED" or job is None or job["metadata"].get("uid") != ref.get("uid"):
        return
    context: Context = memo["context"]
    context.refusal_index = pod_refusals
    await _reconcile_owner(context, dict(job), False, logger, schema_migrations, migration_pods)


async def _reconcile_owner(
    context: Context, job: dict[str, Any], deleted: bool, logger: kopf.Logger,
    schema_migrations: kopf.Index[Any, dict[str, Any]],
    migration_pods: kopf.Index[Any, dict[str, Any]],
) -> None:
    """Reconcile the SchemaMigration that owns ``job``, with the pods as last seen.

    The owner is the resource named by the Job's ``owner`` annotation only when it lives in
    the Job's own namespace and its uid is the Job's owner-uid annotation: a Job elsewhere
    that names a resource is ignored (with a Warning Event on that resource), and a Job of an
    earlier instance of the same name (deleted, re-created) is not the new one's.
    """
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    namespace, _sep, name = annotations.get(ANNOTATION_OWNER, "").partition("/")
    if not name:
        return
    if namespace != meta.get("namespace"):
        _warn_about_foreign_job(context, job, _first(schema_migrations.get((namespace, name))),
                                logger)
        return
    context.pod_index = migration_pods
    resource = _first(schema_migrations.get((namespace, name)))
    resource = resource or await context.api.get_schema_migration(namespace, name)
    if resource is None or resource["metadata"].get("uid") != annotations.get(ANNOTATION_OWNER_UID):
        context.metrics.job_seen(f"{namespace}/{meta['name']}", finished=deleted)
        return  # its resource was deleted (maybe re-created since): the Job finishes on its own
    await reconcile(context, resource, logger, job=job)


def _warn_about_foreign_job(context: Context, job: dict[str, Any], victim: Any,
                            logger: kopf.Logger) -> None:
    """A Warning Event (once per Job) on the resource a Job in another namespace names."""
    meta = job["metadata"]
    if victim is None or not context.first_announcement(f"foreign/{meta.get('uid')}"):
        return
    where = f"{meta.get('namespace')}/{meta['name']}"
    message = (f"ignored Job {where}: it names this SchemaMigration as its owner, but only Jobs "
               f"in namespace {victim['metadata']['namespace']} can be this resource's; "
               "nothing it says is read")
    logger.warning("%s (%s)", message, f"{victim['metadata']['namespace']}/"
                   f"{victim['metadata']['name']}")
    post(victim, WARNING, reasons.FOREIGN_JOB_IGNORED, message)


def _first(values: Any) -> Any:
    return next(iter(values), None) if values else None
