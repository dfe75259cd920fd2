"""A SchemaMigration's status reads as kstatus expects at each phase of a migration.

Helm 4 `--wait` and Flux (`wait: true`, HelmRelease) decide "done", "still going" or "failed"
with kstatus (sigs.k8s.io/cli-utils, pkg/kstatus). :func:`kstatus` below follows the rules of
its README (`pkg/kstatus/README.md`) and of the generic checks it describes
(`pkg/kstatus/status/generic.go`, `checkGenericProperties` / `checkGeneration`, and
`status.go`, `Compute`), in this order:

1. ``metadata.deletionTimestamp`` set: Terminating.
2. ``status.observedGeneration`` present and different from ``metadata.generation``:
   InProgress (the controller has not seen the latest spec).
3. a ``Reconciling`` condition with status True: InProgress.
4. a ``Stalled`` condition with status True: Failed.
5. the ``Ready`` condition (README, "The Ready Condition"): False is InProgress, True is
   Current.
6. otherwise: Current (kstatus assumes a resource without known conditions is reconciled).

The statuses are produced by the operator's own code (:func:`compute_status`,
:func:`invalid_spec_status`) from the Jobs and pods Kubernetes shows at each phase, so a change
of the operator that breaks Helm 4 or Flux fails here. ``OPERATOR_STATUSES`` is shared with the
Argo CD health check's test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from umt_operator.status import compute_status, invalid_spec_status

pytestmark = pytest.mark.unit

IN_PROGRESS, CURRENT, FAILED, TERMINATING = "InProgress", "Current", "Failed", "Terminating"


def kstatus(resource: dict[str, Any]) -> str:
    """The kstatus result of a custom resource, by the rules in this module's docstring."""
    metadata = resource.get("metadata") or {}
    status = resource.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return TERMINATING
    if "generation" in metadata and "observedGeneration" in status:
        if status["observedGeneration"] != metadata["generation"]:
            return IN_PROGRESS
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Reconciling") == "True":
        return IN_PROGRESS
    if conditions.get("Stalled") == "True":
        return FAILED
    if conditions.get("Ready") == "False":
        return IN_PROGRESS
    return CURRENT


# --- the rules themselves, on hand-made statuses ------------------------------------------------


def _cond(type_: str, status: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": "R", "message": "m"}


@pytest.mark.parametrize(
    ("metadata", "status", "expected"),
    [
        ({"generation": 1, "deletionTimestamp": "2025-03-01T12:00:00Z"}, {}, TERMINATING),
        ({"generation": 2}, {"observedGeneration": 1, "conditions": [_cond("Ready", "True")]},
         IN_PROGRESS),
        ({"generation": 1}, {"observedGeneration": -1}, IN_PROGRESS),
        ({"generation": 1}, {"observedGeneration": 1, "conditions": [_cond("Reconciling", "True"),
                                                                     _cond("Stalled", "True")]},
         IN_PROGRESS),
        ({"generation": 1}, {"observedGeneration": 1, "conditions": [_cond("Stalled", "True")]},
         FAILED),
        ({"generation": 1}, {"observedGeneration": 1, "conditions": [_cond("Ready", "False")]},
         IN_PROGRESS),
        ({"generation": 1}, {"observedGeneration": 1, "conditions": [_cond("Ready", "True")]},
         CURRENT),
        ({"generation": 1}, {}, CURRENT),
    ],
    ids=["deleting", "generation-not-observed", "crd-default-minus-one", "reconciling-first",
         "stalled", "ready-false", "ready-true", "no-conditions"],
)
def test_kstatus_rules(metadata: dict, status: dict, expected: str) -> None:
    assert kstatus({"metadata": metadata, "status": status}) == expected


# --- what the operator really writes, phase by phase -------------------------------------------

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
T0, T1 = "2025-03-01T12:00:00Z", "2025-03-01T12:00:20Z"
IMAGE = "ghcr.io/umt/umt-migrations:0.1.0"
HEAD, FIRST = "240cfb931a0a", "0abb288d754e"


def _job(name: str, *conditions: tuple[str, str], active: int = 0, failed: int = 0,
         succeeded: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": T0, "active": active, "ready": 0, "failed": failed,
                              "succeeded": succeeded, "terminating": 0}
    if conditions:
        status["conditions"] = [
            {"type": type_, "status": "True", "reason": reason, "message": "",
             "lastProbeTime": T1, "lastTransitionTime": T1}
            for type_, reason in conditions
        ]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "umt"}, "status": status}


def _pod(job: str, state: dict[str, Any], phase: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job}-x7p2q", "namespace": "umt",
                         "labels": {"batch.kubernetes.io/job-name": job}},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "migrate", "image": IMAGE, "imageID": "", "ready": "running" in state,
                 "restartCount": 0, "started": "running" in state, "state": state,
                 "lastState": {}}]}}


def _terminated(exit_code: int, report: dict[str, Any]) -> dict[str, Any]:
    return {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0
                           else "Error", "message": json.dumps(report), "startedAt": T0,
                           "finishedAt": T1}}


@dataclass(frozen=True)
class Phase:
    """One moment of a migration: the object as the API server would return it."""

    name: str
    resource: dict[str, Any]
    kstatus: str  # what Helm 4 --wait and Flux must conclude
    argocd: str  # what the Argo CD health check must say


def _resource(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
        "metadata": {"name": "umt-schema", "namespace": "umt", "generation": generation},
        "spec": {"targetRevision": "head", "database": {"urlSecretRef": {"name": "umt-db"}}},
    }
    if status is not None:
        body["status"] = status
    return body


def _computed(generation: int, job: dict[str, Any] | None, pods: list[dict[str, Any]],
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    name = f"umt-schema-{generation}-k2x9"
    return compute_status(generation=generation, previous_status=previous, job_name=name,
                          job=job, pods=pods, spec_target="head", image=IMAGE, now=NOW)


def operator_phases() -> list[Phase]:
    """Statuses the operator writes (its own functions), from creation to success or failure."""
    job1 = "umt-schema-1-k2x9"
    ok = {"ok": True, "direction": "upgrade", "fromRevision": None, "toRevision": HEAD,
          "targetRevision": HEAD, "applied": [FIRST, HEAD], "durationSeconds": 1.2}
    failed = {"ok": False, "direction": "upgrade", "fromRevision": None, "toRevision": FIRST,
              "targetRevision": HEAD, "applied": [FIRST], "durationSeconds": 0.4,
              "error": {"reason": "MigrationFailed", "revision": HEAD,
                        "message": f'revision {HEAD} failed: DuplicateTable: relation "x" '
                                   "already exists"}}
    ready = _computed(1, _job(job1, ("SuccessCriteriaMet", "CompletionsReached"),
                              ("Complete", "CompletionsReached"), succeeded=1),
                      [_pod(job1, _terminated(0, ok), "Succeeded")])
    secret = {"waiting": {"reason": "CreateContainerConfigError",
                          "message": 'secret "umt-db" not found'}}
    return [
        Phase("created (CRD default)", _resource(1, {"observedGeneration": -1}),
              IN_PROGRESS, "Progressing"),
        Phase("creating the Job", _resource(1, _computed(1, None, [])),
              IN_PROGRESS, "Progressing"),
        Phase("pod starting", _resource(1, _computed(
            1, _job(job1, active=1),
            [_pod(job1, {"waiting": {"reason": "ContainerCreating"}}, "Pending")])),
              IN_PROGRESS, "Progressing"),
        Phase("migrating", _resource(1, _computed(
            1, _job(job1, active=1), [_pod(job1, {"running": {"startedAt": T0}}, "Running")])),
              IN_PROGRESS, "Progressing"),
        Phase("ready", _resource(1, ready), CURRENT, "Healthy"),
        Phase("new generation not yet observed", _resource(2, ready),
              IN_PROGRESS, "Progressing"),
        Phase("migration failed", _resource(1, _computed(
            1, _job(job1, ("FailureTarget", "PodFailurePolicy"), ("Failed", "PodFailurePolicy"),
                    failed=1),
            [_pod(job1, _terminated(3, failed), "Failed")])),
              FAILED, "Degraded"),
        Phase("secret missing", _resource(1, _computed(
            1, _job(job1, active=1), [_pod(job1, secret, "Pending")])),
              FAILED, "Degraded"),
        Phase("invalid spec", _resource(1, invalid_spec_status(
            1, None, "targetRevision 'head-1' is relative", now=NOW)),
              FAILED, "Degraded"),
    ]


OPERATOR_STATUSES = operator_phases()


@pytest.mark.parametrize("phase", OPERATOR_STATUSES, ids=lambda p: p.name)
def test_operator_statuses_read_as_kstatus_expects(phase: Phase) -> None:
    assert kstatus(phase.resource) == phase.kstatus, json.dumps(phase.resource["status"])


def test_every_kstatus_outcome_is_reached() -> None:
    """The table covers the three results Helm 4 and Flux act on."""
    assert {p.kstatus for p in OPERATOR_STATUSES} == {IN_PROGRESS, CURRENT, FAILED}
