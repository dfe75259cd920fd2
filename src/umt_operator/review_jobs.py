"""The review's Jobs and ConfigMap: pure manifests, and reading what the Jobs leave behind.

The plan Job (``umt-migrations plan --format json``) and the drift Job (``check --format
json``) are the migration Job of :func:`umt_operator.jobs.render_job` with other arguments: the
same image, the same ``DATABASE_URL`` from the same Secret reference, the same pod security,
resources, ServiceAccount and exit-code policy. Both only read the database.

How the full plan gets out of the pod. The kubelet keeps at most 4096 bytes of termination
message, so the plan Job writes there only the bounded summary (digest, counts, revisions),
and prints the whole plan (SQL and findings) as one JSON line on stdout. The operator reads that
line from the pod's log (``get pods/log``, on the pods of its own Jobs only), checks that its
digest is the summary's, and writes the ConfigMap itself, owned by the SchemaMigration. The
alternative, the runner creating the ConfigMap, would give every migration pod's
ServiceAccount write access to ConfigMaps (and a token mounted in a pod that holds the database
URL); reading logs keeps the runner without any Kubernetes rights. The digest in
``status.plan`` comes from the termination message, never from the log; when the log cannot be
read (expired, too large) ``status.plan.sqlConfigMap`` stays empty and the decision, which needs
only the summary, is unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from umt_migrations.api_names import API_VERSION, GROUP, KIND
from umt_operator.jobs import (
    ANNOTATION_GENERATION,
    CONTAINER_NAME,
    LABEL_RESOURCE,
    MANAGED_BY,
    label_value,
)

LABEL_JOB_KIND = f"{GROUP}/job-kind"
ANNOTATION_PLAN_DIGEST = f"{GROUP}/plan-digest"
ANNOTATION_PLAN_SHA256 = f"{GROUP}/plan-sha256"
ANNOTATION_PLAN_BYTES = f"{GROUP}/plan-bytes"
ANNOTATION_TRUNCATED = f"{GROUP}/plan-truncated"
PLAN, DRIFT = "plan", "drift"
PLAN_KEY = "plan.json"
#: A ConfigMap holds at most 1 MiB (etcd's object limit); the plan keeps room for metadata.
CONFIGMAP_MAX_BYTES = 900 * 1024
#: The most of a plan pod's log the operator reads (``limitBytes``).
LOG_LIMIT_BYTES = 8 * 1024 * 1024
TRUNCATED_SQL = "-- not shown: this plan is larger than a ConfigMap holds; see the truncated note"

_MAX_NAME = 63
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def _hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def review_job_name(resource_name: str, uid: str, generation: int, kind: str,
                    slot: int | None = None) -> str:
    """``<name>-<kind>-<generation>[-<slot>]-<hash>``: one per instance, generation (and slot).

    The hash (16 hex digits: 64 bits, the bound of umt_operator.jobs.UID_HASH_LENGTH) covers
    the owner's uid, so a re-created resource never meets an old Job; a DNS-1123 label of at
    most 63 characters (the Job controller copies it into a pod label). The Job is read only
    when its namespace and owner-uid annotation are the resource's (JobOwner.owns).
    """
    marker = f"{generation}" if slot is None else f"{generation}-{slot}"
    suffix = f"-{kind}-{marker}-{_hash(f'{uid}/{generation}/{kind}/{slot}', 16)}"
    base = _NOT_LABEL_CHARS.sub("-", resource_name.lower()).strip("-") or "smig"
    return base[: _MAX_NAME - len(suffix)].rstrip("-") + suffix


def _container(job: Mapping[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c.get("name") == CONTAINER_NAME)


def _option(args: Sequence[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args[:-1] else None


def review_job(migration_job: Mapping[str, Any], *, kind: str, name: str) -> dict[str, Any]:
    """The plan or drift Job made from this generation's rendered migration Job.

    ``migration_job`` is what :func:`umt_operator.jobs.render_job` returned; only the name, a
    kind label and the runner's arguments change (``plan --to T --format json`` or ``check
    --format json``, with the same ``--config`` and ``--allow-downgrade``).
    """
    job = copy.deepcopy(dict(migration_job))
    container = _container(job)
    old: list[str] = list(container.get("args") or [])
    config = _option(old, "--config")
    if kind == PLAN:
        args = ["plan", "--to", str(_option(old, "--to")), "--format", "json"]
        if "--allow-downgrade" in old:
            args.append("--allow-downgrade")
    else:
        args = ["check", "--format", "json"]
    if config is not None:
        args += ["--config", config]
    container["args"] = args
    job["metadata"]["name"] = name
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels[LABEL_JOB_KIND] = kind
        labels["app.kubernetes.io/component"] = f"schema-{kind}"
    return job


def with_plan_digest(migration_job: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """The migration Job, told to run only the plan with ``digest`` (``--plan-digest``)."""
    job = copy.deepcopy(dict(migration_job))
    container = _container(job)
    container["args"] = [*container.get("args", []), "--plan-digest", digest]
    job["metadata"].setdefault("annotations", {})[ANNOTATION_PLAN_DIGEST] = digest
    return job


def job_kind(job: Mapping[str, Any]) -> str:
    """``plan``, ``drift`` or ``migrate``: which of the operator's Jobs this is."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_JOB_KIND) or "migrate")


# --- what the pods leave ----------------------------------------------------------------------


def termination_message(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The runner container's termination message of the pod that ended last."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != CONTAINER_NAME:
                continue
            ended = (status.get("state") or {}).get("terminated") or \
                (status.get("lastState") or {}).get("terminated")
            if ended and ended.get("message"):
                found.append((str(ended.get("finishedAt") or ""), str(ended["message"])))
    return max(found)[1] if found else None


def last_pod_name(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The newest pod (by creation), whose log holds the plan."""
    ordered = sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
    return str(ordered[-1]["metadata"]["name"]) if ordered else None


def plan_from_log(log: str, digest: str) -> str | None:
    """The full plan's JSON line in a plan pod's log, if one there has ``digest``."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if not text.startswith("{") or digest not in text:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("digest") == digest and "steps" in data:
            return text
    return None


# --- the ConfigMap ----------------------------------------------------------------------------


def plan_config_map_name(resource_name: str) -> str:
    """``<name>-plan``; a name too long for that is cut and suffixed with a hash."""
    name = f"{resource_name}-plan"
    if len(name) <= 253:
        return name
    return f"{resource_name[:253 - 16]}-{_hash(resource_name)}-plan"


def _bounded(plan_text: str, limit: int) -> tuple[str, bool]:
    """``plan_text`` if it fits in ``limit`` bytes, else the plan with SQL left out, last
    steps first, and a ``truncated`` note; the findings stay as long as they fit."""
    if len(plan_text.encode()) <= limit:
        return plan_text, False
    data = json.loads(plan_text)
    steps: list[dict[str, Any]] = data.get("steps") or []
    omitted: list[str] = []
    data["truncated"] = {"bytes": len(plan_text.encode()), "omittedSqlOf": omitted,
                         "sha256": hashlib.sha256(plan_text.encode()).hexdigest()}

    def size() -> int:
        return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())

    for step in reversed(steps):
        if size() <= limit:
            break
        step["sql"] = TRUNCATED_SQL
        omitted.insert(0, str(step.get("revision")))
    for step in reversed(steps):
        if size() <= limit:
            break
        step["findings"] = step.get("findings", [])[:1]
    while size() > limit and steps:
        steps.pop()
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False), True


def plan_config_map(*, owner: Mapping[str, Any], plan_text: str, digest: str,
                    generation: int, limit: int = CONFIGMAP_MAX_BYTES) -> dict[str, Any]:
    """The ConfigMap holding the full plan of ``owner``'s generation, owned by it.

    Bounded to ``limit`` bytes (the SQL of the last steps is left out first, with a
    ``truncated`` note); the annotations carry the plan's digest and the SHA-256 of the whole
    plan as printed, truncated or not. Deleting the SchemaMigration deletes it (an owner
    reference, unlike the Jobs: a plan is only a record).
    """
    meta = owner["metadata"]
    text, truncated = _bounded(plan_text, limit)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": plan_config_map_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {**MANAGED_BY, LABEL_RESOURCE: label_value(meta["name"]),
                       LABEL_JOB_KIND: PLAN},
            "annotations": {
                ANNOTATION_PLAN_DIGEST: digest,
                ANNOTATION_PLAN_SHA256: "sha256:" + hashlib.sha256(plan_text.encode()).hexdigest(),
                ANNOTATION_PLAN_BYTES: str(len(plan_text.encode())),
                ANNOTATION_TRUNCATED: "true" if truncated else "false",
                ANNOTATION_GENERATION: str(generation),
            },
            "ownerReferences": [{
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
            }],
        },
        "data": {PLAN_KEY: text},
    }
