"""The operator end to end: kopf in-process against the API emulator, Jobs run by the fake
kubelet as real ``umt-migrations migrate`` processes against a real PostgreSQL database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.alembic_projects import linear_chain, make_project
from tests.conftest import REPO_ROOT
from tests.k8s.emulator import CRDS, EVENTS, JOBS, PODS, SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    NEW_IMAGE,
    NS,
    OLD_IMAGE,
    REVISION_IDS,
    Operator,
    add_migration,
    add_secret,
    condition,
    db_revision,
    event_reasons,
    free_port,
    jobs_of,
    two_releases,
    wait_condition,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kubelet runs two "images" (two releases of this repository)."""
    return two_releases(tmp_path_factory)

def test_create_to_ready_at_head(emulator: Emulator, operator: Operator, kubelet: FakeKubelet,
                                 pg_url: str, kubectl: Any) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator)
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    status = obj["status"]
    assert status["currentRevision"] == HEAD and status["targetRevision"] == HEAD
    assert status["direction"] == "upgrade" and status["appliedRevisions"] == REVISION_IDS
    assert status["phase"] == "Succeeded" and status["appliedImage"] == "registry.example/umt:2.0.0"
    assert status["observedGeneration"] == 1
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert condition(obj, "Reconciling")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"
    assert f"{len(REVISION_IDS)} steps" in status["message"]
    assert db_revision(pg_url) == HEAD
    assert len(jobs_of(emulator, "umt-schema")) == 1 and kubelet.processes_started == 1
    emulator.wait_for(
        lambda: {"JobCreated", "Succeeded"} <= set(event_reasons(emulator, "umt-schema")))
    # what users see with the real kubectl
    kubectl("wait", "--for=condition=Ready", "smig/umt-schema", "--timeout=10s")
    table = kubectl("get", "smig", "umt-schema").stdout
    assert "True" in table and "Succeeded" in table and HEAD in table
    assert "umt-schema-1-" in kubectl("get", "smig", "-o", "wide").stdout
    secret_free = json.dumps(emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema"))
    assert "postgres@" not in secret_free
    samples = {s.name: s.value for m in operator.metrics.registry.collect() for s in m.samples}
    assert samples.get("umt_schema_migration_jobs_created_total") == 1
    assert samples.get("umt_schema_migrations_total") == 1  # one run, announced once
    assert event_reasons(emulator, "umt-schema").count("Succeeded") == 1
    assert samples.get("umt_schema_migration_jobs_running") == 0


def test_downgrade_refused_then_allowed(emulator: Emulator, operator: Operator,
                                        kubelet: FakeKubelet, pg_url: str, kubectl: Any) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator)
    wait_condition(emulator, "umt-schema", "Ready")

    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema",
                   {"spec": {"targetRevision": REVISION_IDS[1]}})
    obj = wait_condition(emulator, "umt-schema", "Stalled", "DowngradeNotAllowed", generation=2)
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["currentRevision"] == HEAD and db_revision(pg_url) == HEAD
    assert "allowDowngrade" in obj["status"]["message"]

    kubectl("patch", "smig", "umt-schema", "--type=merge", "-p", '{"spec":{"allowDowngrade":true}}')
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=3)
    assert obj["status"]["direction"] == "downgrade"
    assert obj["status"]["currentRevision"] == REVISION_IDS[1] == db_revision(pg_url)
    assert obj["status"]["appliedRevisions"] == list(reversed(REVISION_IDS[2:]))
    assert len(jobs_of(emulator, "umt-schema")) == 3  # one per generation


def test_failing_revision_stalls_with_the_revision_left(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        tmp_path: Path) -> None:
    revs = linear_chain(3)
    revs[3].fail = True
    ini = make_project(tmp_path / "project", revs)
    add_secret(emulator, pg_url)
    add_migration(emulator, alembic={"config": str(ini)})
    obj = wait_condition(emulator, "umt-schema", "Stalled", "MigrationFailed")
    status = obj["status"]
    assert status["currentRevision"] == revs[2].id == db_revision(pg_url)
    assert status["phase"] == "Failed" and condition(obj, "Reconciling")["status"] == "False"
    assert "table_that_does_not_exist" in status["message"]
    assert len(kubelet.runs_for(jobs_of(emulator, "umt-schema")[0]["metadata"]["name"])) == 1
    emulator.wait_for(lambda: "MigrationFailed" in event_reasons(emulator, "umt-schema"))


def test_missing_secret_is_reported_then_recovers(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_migration(emulator)
    obj = wait_condition(emulator, "umt-schema", "Stalled", "SecretNotFound")
    assert 'secret "umt-db" not found' in obj["status"]["message"]
    assert kubelet.processes_started == 0
    add_secret(emulator, pg_url)
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert db_revision(pg_url) == HEAD


def test_unpullable_image_is_reported(emulator: Emulator, operator: Operator,
                                      kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, image="registry.example/umt:does-not-exist-9.9")
    obj = wait_condition(emulator, "umt-schema", "Stalled", "ImagePullFailed")
    assert "does-not-exist" in obj["status"]["message"]
    assert kubelet.processes_started == 0


def test_deadline_exceeded_is_reported(emulator: Emulator, operator: Operator,
                                       kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    with kubelet.held("umt-schema-*"):  # the pod never gets to finish within one second
        add_migration(emulator, job={"activeDeadlineSeconds": 1})
        obj = wait_condition(emulator, "umt-schema", "Stalled", "DeadlineExceeded")
    assert obj["status"]["phase"] == "Failed"
    assert condition(obj, "Ready")["status"] == "False"


def test_invalid_spec_is_stalled_without_a_job(emulator: Emulator, operator: Operator) -> None:
    # The emulator applies the CRD's rules, which refuse "+1"; a cluster whose CRD predates
    # them (Helm never upgrades crds/) accepts it, and the operator's own check must stop it.
    crd = emulator.get(CRDS, None, "schemamigrations.migrations.umt.dev")
    assert crd is not None
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    del spec["properties"]["targetRevision"]["x-kubernetes-validations"]
    emulator.register_crd(crd)
    add_migration(emulator, targetRevision="+1")
    obj = wait_condition(emulator, "umt-schema", "Stalled", "InvalidSpec")
    assert "relative" in obj["status"]["message"]
    assert jobs_of(emulator, "umt-schema") == []
    emulator.wait_for(lambda: "InvalidSpec" in event_reasons(emulator, "umt-schema"))


def test_operator_restart_mid_job_creates_no_second_job(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    with kubelet.held("umt-schema-*"):
        add_migration(emulator)
        emulator.wait_for(lambda: jobs_of(emulator, "umt-schema"))
        wait_condition(emulator, "umt-schema", "Reconciling")
        operator.stop()
        operator.start()  # a restarted operator sees the same generation and its Job
        operator.stop()
    # the Job finishes while the operator is down
    job = jobs_of(emulator, "umt-schema")[0]
    emulator.wait_for(lambda: (emulator.get(JOBS, NS, job["metadata"]["name"])["status"]
                               .get("succeeded")))
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema")
    assert condition(obj, "Ready").get("status") != "True"
    operator.start()
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert len(jobs_of(emulator, "umt-schema")) == 1 and kubelet.processes_started == 1


@pytest.mark.parametrize("changed_when", ["the Job exists", "its runner runs"])
def test_spec_change_mid_job_waits_for_the_running_job(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        changed_when: str) -> None:
    """A Job whose pod is starting or whose runner runs is waited for, never replaced (only
    one whose pod never started is: test_operator_pod_trouble.py)."""
    add_secret(emulator, pg_url)
    with kubelet.held("umt-schema-*"):
        add_migration(emulator, targetRevision=REVISION_IDS[1])
        emulator.wait_for(lambda: jobs_of(emulator, "umt-schema"))
        if changed_when == "its runner runs":
            emulator.wait_for(lambda: any(
                (p.get("status") or {}).get("phase") == "Running" for p in emulator.list(PODS, NS)))
        first = jobs_of(emulator, "umt-schema")[0]["metadata"]["name"]
        emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {"targetRevision": "head"}})
        obj = emulator.wait_for_object(SCHEMA_MIGRATIONS, NS, "umt-schema",
                                       lambda o: o["status"].get("observedGeneration") == 2)
        assert f"waiting for Job {first}" in obj["status"]["message"]
        assert condition(obj, "Reconciling")["status"] == "True"
        assert [j["metadata"]["name"] for j in jobs_of(emulator, "umt-schema")] == [first]
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)
    assert obj["status"]["currentRevision"] == HEAD == db_revision(pg_url)
    names = sorted(j["metadata"]["name"] for j in jobs_of(emulator, "umt-schema"))
    assert len(names) == 2 and first in names  # the first Job was never deleted
    assert kubelet.processes_started == 2
    assert "JobReplaced" not in event_reasons(emulator, "umt-schema")


def test_deleting_mid_job_neither_hangs_nor_interrupts(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    with kubelet.held("umt-schema-*"):
        add_migration(emulator)
        emulator.wait_for(lambda: jobs_of(emulator, "umt-schema"))
        job = jobs_of(emulator, "umt-schema")[0]["metadata"]["name"]
        operator.stop()  # deletion must not wait for the operator
        assert not emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema")["metadata"].get("finalizers")
        emulator.delete(SCHEMA_MIGRATIONS, NS, "umt-schema")
        assert emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema") is None
        operator.start()
    emulator.wait_for(lambda: emulator.get(JOBS, NS, job)["status"].get("succeeded"))
    assert db_revision(pg_url) == HEAD  # the running migration finished untouched
    assert kubelet.processes_started == 1


def test_two_resources_on_one_database_both_end_ready(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, name="app-a")
    add_migration(emulator, name="app-b")
    a = wait_condition(emulator, "app-a", "Ready", "Succeeded")
    b = wait_condition(emulator, "app-b", "Ready", "Succeeded")
    assert a["status"]["currentRevision"] == b["status"]["currentRevision"] == HEAD
    # The migration lock serialises the two Jobs, and each plans under it: one migrated, the
    # other found the database at head. Two upgrades would mean both applied the revisions.
    directions = sorted([a["status"]["direction"], b["status"]["direction"]])
    assert directions == ["none", "upgrade"]
    applied = [len(a["status"]["appliedRevisions"]), len(b["status"]["appliedRevisions"])]
    assert sorted(applied) == [0, len(REVISION_IDS)]


def test_operator_process_serves_liveness_and_metrics(emulator: Emulator, kubelet: FakeKubelet,
                                                      pg_url: str, tmp_path: Path) -> None:
    """``python -m umt_operator`` as deployed: settings from the environment, kubeconfig login,
    /healthz and Prometheus /metrics on their ports; no secret in its logs."""
    import os
    import subprocess
    import urllib.request

    health, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(emulator.kubeconfig_path),
           "UMT_OPERATOR_NAMESPACES": NS, "UMT_OPERATOR_HEALTH_PORT": str(health),
           "UMT_OPERATOR_METRICS_PORT": str(metrics),
           "UMT_OPERATOR_ALEMBIC_CONFIG": str(REPO_ROOT / "alembic.ini")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "umt_operator"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        add_secret(emulator, pg_url)
        add_migration(emulator)
        wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
        # The Succeeded event is posted after the run is counted: once it exists, so does the count.
        emulator.wait_for(lambda: "Succeeded" in event_reasons(emulator, "umt-schema"))
        with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=10) as reply:
            assert reply.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        assert ('umt_schema_migrations_total{direction="upgrade",reason="Succeeded",'
                'result="succeeded"} 1.0') in text, text
        assert "umt_schema_migration_duration_seconds_bucket" in text
        assert "umt_schema_migration_jobs_running 0.0" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "postgres@" not in log.read_text() and "created Job umt-schema-1-" in log.read_text()


def test_bad_operator_settings_name_the_variable() -> None:
    import os
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "umt_operator"], capture_output=True, text=True,
                          env={**os.environ, "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "lots"}, timeout=60)
    assert proc.returncode == 2
    assert "UMT_OPERATOR_JOB_BACKOFF_LIMIT" in proc.stderr and "Traceback" not in proc.stderr


def test_downgrade_runs_with_the_image_that_applied_the_current_revision(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, image=NEW_IMAGE)
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert obj["status"]["appliedImage"] == NEW_IMAGE and obj["status"]["currentRevision"] == HEAD

    # Roll the release back: the old image does not know the database's revision.
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {
        "image": OLD_IMAGE, "targetRevision": REVISION_IDS[1], "allowDowngrade": True}})
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)
    status = obj["status"]
    assert status["jobName"].endswith("-prev")
    assert status["direction"] == "downgrade" and status["currentRevision"] == REVISION_IDS[1]
    assert db_revision(pg_url) == REVISION_IDS[1]
    assert status["appliedImage"] == NEW_IMAGE  # the image that holds the current revision
    jobs = {j["metadata"]["name"]: j["spec"]["template"]["spec"]["containers"][0]["image"]
            for j in jobs_of(emulator, "umt-schema")}
    assert sorted(jobs.values()) == [OLD_IMAGE, NEW_IMAGE, NEW_IMAGE]
    first_try = next(n for n, image in jobs.items() if image == OLD_IMAGE)
    report = json.loads(kubelet.runs_for(first_try)[0].termination_message)
    assert report["error"]["reason"] == "RevisionNotFound" and report["error"]["revision"] == HEAD


def test_unknown_current_revision_without_downgrade_permission_stalls(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, image=NEW_IMAGE)
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {"image": OLD_IMAGE}})
    obj = wait_condition(emulator, "umt-schema", "Stalled", "RevisionNotFound", generation=2)
    assert HEAD in obj["status"]["message"]
    assert len(jobs_of(emulator, "umt-schema")) == 2  # no second try without allowDowngrade


def test_events_are_shown_by_kubectl_describe(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        kubectl: Any) -> None:
    """Issue 15 §4: Events posted from a Job's event (the resource as the index holds it)
    lacked apiVersion and kind, so `kubectl describe` never showed them. It finds Events by
    involvedObject kind, name, namespace and uid: every Event must carry the full reference."""
    add_migration(emulator)  # no Secret: a Warning from the pod path first
    wait_condition(emulator, "umt-schema", "Stalled", "SecretNotFound")
    add_secret(emulator, pg_url)
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    emulator.wait_for(lambda: {"JobCreated", "SecretNotFound", "Succeeded"}
                      <= set(event_reasons(emulator, "umt-schema")))
    ours = [e for e in emulator.list(EVENTS, NS) if e["involvedObject"]["name"] == "umt-schema"]
    assert len(ours) >= 3
    for event in ours:
        assert event["involvedObject"] == {
            "apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "name": "umt-schema", "namespace": NS, "uid": obj["metadata"]["uid"]}, event
    described = kubectl("describe", "smig", "umt-schema").stdout
    events = described[described.index("Events:"):]
    for reason in ("JobCreated", "SecretNotFound", "Succeeded"):
        assert reason in events, described
