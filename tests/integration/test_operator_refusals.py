"""What the cluster refuses is reported within seconds (issue 13, finding 5).

The operator in-process against the API emulator, which validates Jobs and pods as an API
server does and whose Job controller turns a refused pod into `FailedCreate` Events with
back-off (tests/k8s/README.md). Each test names the finding it guards; each failed on the
operator before it read those refusals: the resource said "waiting for its pod to start"
until the Job's deadline, or kept observedGeneration -1 when the Job itself was refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.k8s.emulator import (
    CRDS,
    EVENTS,
    NAMESPACES,
    RESOURCE_QUOTAS,
    SCHEMA_MIGRATIONS,
    Emulator,
)
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    NS,
    Operator,
    add_migration,
    add_secret,
    condition,
    db_revision,
    event_reasons,
    jobs_of,
    wait_condition,
)

pytestmark = pytest.mark.integration

#: A refusal is reported within this many seconds of the Job controller's Event. Both times
#: are written in whole seconds (RFC 3339), so 2 means "the same or the next second or so".
WITHIN_SECONDS = 2


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def refusals_of(emulator: Emulator, job: str) -> list[dict[str, Any]]:
    """The Job controller's FailedCreate Events on ``job``, found as the operator finds them."""
    return emulator.list(EVENTS, NS, fields=f"involvedObject.kind=Job,involvedObject.name={job},"
                                            "reason=FailedCreate")


def reported_within_seconds(emulator: Emulator, obj: dict[str, Any], type_: str) -> float:
    """Seconds from the first FailedCreate Event of the resource's Job to the condition."""
    (job,) = jobs_of(emulator, obj["metadata"]["name"])
    events = refusals_of(emulator, job["metadata"]["name"])
    assert events, "no FailedCreate Event was posted"
    first = min(parse(e.get("firstTimestamp") or e["eventTime"]) for e in events)
    delay = (parse(condition(obj, type_)["lastTransitionTime"]) - first).total_seconds()
    assert 0 <= delay <= WITHIN_SECONDS, delay
    return delay


def without_rule(emulator: Emulator, field: str) -> None:
    """Serve the CRD without the CEL rules of ``spec.<field>``: a cluster whose CRD predates
    them (Helm never upgrades a chart's crds/), where the operator must cope on its own."""
    crd = emulator.get(CRDS, None, "schemamigrations.migrations.umt.dev")
    assert crd is not None
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"][field]["x-kubernetes-validations"]
    emulator.register_crd(crd)


def test_a_job_the_api_server_refuses_is_job_rejected(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 5: a Job refused on create (422: requests above limits, which the CRD cannot
    compare) is Stalled at once with the server's message, observedGeneration set, a Warning
    Event; it used to stay at observedGeneration -1 with kopf's "will ignore it"."""
    add_secret(emulator, pg_url)
    add_migration(emulator, job={"resources": {"requests": {"memory": "2Gi"},
                                               "limits": {"memory": "1Gi"}}})
    obj = wait_condition(emulator, "umt-schema", "Stalled", "JobRejected", timeout=30)
    status = obj["status"]
    assert status["observedGeneration"] == 1 and status["phase"] == "Failed"
    assert "must be less than or equal to memory limit" in status["message"], status["message"]
    assert "\n" not in status["message"] and "jobName" not in status
    assert jobs_of(emulator, "umt-schema") == [] and kubelet.processes_started == 0
    emulator.wait_for(lambda: "JobRejected" in event_reasons(emulator, "umt-schema"))
    # fixing the spec runs the migration
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {"job": {"resources": {
        "requests": {"memory": "512Mi"}}}}})
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)


def test_a_pod_with_an_invalid_image_is_pod_rejected_within_seconds(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 5: an image with a trailing space (which a CRD of an earlier release let
    through) passes the Job's validation but not the pod's: the Job controller's FailedCreate
    Event is reported as Stalled (PodRejected) with the server's message, within seconds."""
    add_secret(emulator, pg_url)
    without_rule(emulator, "image")  # the CRD of this release refuses it at apply time
    add_migration(emulator, image="registry.example/umt:2.0.0 ")
    obj = wait_condition(emulator, "umt-schema", "Stalled", "PodRejected", timeout=30)
    assert "must not have leading or trailing whitespace" in obj["status"]["message"]
    assert obj["status"]["phase"] == "Pending"
    delay = reported_within_seconds(emulator, obj, "Stalled")
    print(f"\nPodRejected {delay:.0f} s after the Job controller's first FailedCreate Event")
    emulator.wait_for(lambda: "PodRejected" in event_reasons(emulator, "umt-schema"))
    assert kubelet.processes_started == 0
    # The fix replaces the Job at once: its pod never existed, it never touched the database.
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema",
                   {"spec": {"image": "registry.example/umt:2.0.0"}})
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)
    assert "JobReplaced" in event_reasons(emulator, "umt-schema")


def test_a_pod_security_violation_is_pod_rejected_within_seconds(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 5: the namespace enforces PodSecurity `restricted`; an unconfined AppArmor
    profile through job.podAnnotations violates it. The Job is accepted, its pod is not: the
    resource is Stalled (PodRejected) with the server's message within seconds."""
    add_secret(emulator, pg_url)
    emulator.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    add_migration(emulator, job={"podAnnotations": {
        "container.apparmor.security.beta.kubernetes.io/migrate": "unconfined"}})
    obj = wait_condition(emulator, "umt-schema", "Stalled", "PodRejected", timeout=30)
    message = obj["status"]["message"]
    assert 'violates PodSecurity "restricted:latest": forbidden AppArmor profile' in message
    assert "unconfined" in message and obj["status"]["phase"] == "Pending"
    reported_within_seconds(emulator, obj, "Stalled")
    assert kubelet.processes_started == 0


def test_an_exceeded_quota_is_reported_and_clears_by_itself(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 5: a ResourceQuota with no room refuses the pod; that may clear (other pods
    end), so the resource stays Reconciling with the server's message, and goes on to Ready
    when the quota has room."""
    add_secret(emulator, pg_url)
    emulator.create(RESOURCE_QUOTAS, NS, {"apiVersion": "v1", "kind": "ResourceQuota",
                                          "metadata": {"name": "pods"},
                                          "spec": {"hard": {"pods": "0"}}})
    add_migration(emulator)
    obj = wait_condition(emulator, "umt-schema", "Reconciling", "QuotaExceeded", timeout=30)
    assert "exceeded quota: pods" in obj["status"]["message"]
    assert condition(obj, "Stalled")["status"] == "False"
    reported_within_seconds(emulator, obj, "Reconciling")
    emulator.patch(RESOURCE_QUOTAS, NS, "pods", {"spec": {"hard": {"pods": "5"}}})
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", timeout=90)
    assert obj["status"]["currentRevision"] == db_revision(pg_url)


@pytest.mark.parametrize(("spec", "denied"), [
    ({"image": "evil.example/steal-db-url:1"}, "image evil.example/steal-db-url:1"),
    ({"job": {"serviceAccountName": "cluster-admin"}}, "job.serviceAccountName cluster-admin"),
])
def test_what_the_policy_does_not_allow_gets_no_job(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        spec: dict[str, Any], denied: str) -> None:
    """Finding 7: whoever may create a SchemaMigration may not run any image as any
    ServiceAccount through the operator: by default only the default image's repository and
    the Jobs' default account. Stalled (PolicyDenied), no Job, a Warning Event."""
    add_secret(emulator, pg_url)
    add_migration(emulator, **spec)
    obj = wait_condition(emulator, "umt-schema", "Stalled", "PolicyDenied", timeout=30)
    assert denied in obj["status"]["message"] and "not allowed" in obj["status"]["message"]
    assert obj["status"]["observedGeneration"] == 1
    emulator.wait_for(lambda: "PolicyDenied" in event_reasons(emulator, "umt-schema"))
    assert jobs_of(emulator, "umt-schema") == [] and kubelet.processes_started == 0
