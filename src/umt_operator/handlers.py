"""kopf handlers: thin. Each one hands the object to :func:`reconcile` and returns.

Run with ``kopf run -m umt_operator.handlers --all-namespaces`` (or ``python -m umt_operator``,
which takes the namespaces and ports from ``UMT_OPERATOR_*``).

Only event handlers are registered for SchemaMigrations: no finalizer is ever added, so
deleting a resource never waits for the operator (and never touches the database).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from umt_operator import leader
from umt_operator.jobs import ANNOTATION_OWNER
from umt_operator.kube import GROUP, PLURAL, VERSION, KubeAPI
from umt_operator.metrics import Metrics
from umt_operator.reconcile import (
    Context,
    job_worth_reconciling,
    reconcile,
    worth_reconciling,
)
from umt_operator.settings import Settings, SettingsError

MANAGED_BY = {"app.kubernetes.io/managed-by": "umt-schema-operator"}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
                  **_: Any) -> None:
    """Validate the settings, open the API client, serve metrics; all kept in ``memo``."""
    try:
        config = memo.get("settings") or Settings.from_env()
    except SettingsError as exc:  # retrying cannot fix a bad variable: stop the operator
        raise kopf.PermanentError(str(exc)) from None
    info = memo.get("connection") or _login(settings, logger)
    metrics = memo.get("metrics") or Metrics()
    if config.metrics_enabled and not memo.get("metrics"):
        metrics.serve(config.metrics_port)
    memo["context"] = Context(api=KubeAPI(info), settings=config, metrics=metrics)
    if config.leader_election:  # a standby waits here: kopf watches nothing before we return
        memo["leadership"] = await leader.lead(memo["context"].api, config)
    settings.posting.level = logging.WARNING  # Events: our own (kopf.event) plus warnings
    # The CRD is installed with the operator and namespaces are named: no need to watch
    # CRDs and Namespaces, so no RBAC to read them either.
    settings.scanning.disabled = True
    logger.info("umt-schema-operator started: default image %s", config.default_image)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> kopf.ConnectionInfo:
    """In-cluster service account, else KUBECONFIG: kopf's lean logins, no client library."""
    return _login(settings, logger)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    context: Context | None = memo.get("context")
    if memo.get("leadership") is not None:  # after kopf stopped handling: a standby may lead
        await memo["leadership"].release()
    if context is not None:
        await context.api.close()


@kopf.on.probe(id="api")
async def api_reachable(memo: kopf.Memo, **_: Any) -> bool:
    """Liveness: the operator's own client is open (kopf checks the watches itself)."""
    return memo.get("context") is not None


@kopf.on.event(GROUP, VERSION, PLURAL)
async def schema_migration_event(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: logging.Logger, **_: Any
) -> None:
    """Any change to a SchemaMigration (and its initial listing on start)."""
    if type == "DELETED":
        logger.info("deleted; its Job, if any, finishes on its own and the database is untouched")
        memo["context"].locks.pop((body.metadata.namespace, body.metadata.name), None)
        return
    if worth_reconciling(type, body):
        await reconcile(memo["context"], body, logger)


@kopf.index(GROUP, VERSION, PLURAL)
def schema_migrations(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """The SchemaMigrations as last seen by the watch, so a Job event needs no extra read."""
    return {(namespace, name): {
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }}


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)
async def job_event(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: logging.Logger,
    schema_migrations: kopf.Index[Any, dict[str, Any]], **_: Any
) -> None:
    """A migration Job changed: recompute its SchemaMigration's status (it may start the next)."""
    owner = (body.metadata.annotations or {}).get(ANNOTATION_OWNER, "")
    namespace, _sep, name = owner.partition("/")
    if not name or not job_worth_reconciling(type, body):
        return
    context: Context = memo["context"]
    indexed = schema_migrations.get((namespace, name))
    resource = next(iter(indexed), None) if indexed else None
    resource = resource or await context.api.get_schema_migration(namespace, name)
    if resource is None:
        context.metrics.job_seen(f"{body.metadata.namespace}/{body.metadata.name}",
                                 finished=type == "DELETED")
        return  # the resource was deleted: the Job finishes on its own
    await reconcile(context, resource, logger, job=dict(body))


def _login(settings: kopf.OperatorSettings, logger: logging.Logger) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings, logger=logger)
    info = info or kopf.login_with_kubeconfig(settings=settings, logger=logger)
    if info is None:
        raise kopf.PermanentError(
            "no Kubernetes credentials: run in a pod with a service account, or set KUBECONFIG"
        )
    return info
