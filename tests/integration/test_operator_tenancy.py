"""A Job belongs to exactly one resource instance (issue 13, findings 1, 2 and 3).

The operator in-process against the API emulator, Jobs run by the fake kubelet as real
processes against real PostgreSQL databases. Each test names the finding it guards; each
failed on the operator before Jobs were bound to their owner's uid and namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.k8s.emulator import EVENTS, JOBS, SCHEMA_MIGRATIONS, Emulator
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
    jobs_of,
    two_releases,
    wait_condition,
)

pytestmark = pytest.mark.integration

EVIL = "evil"
EVIL_IMAGE = "evil.example/steal-db-url:1"
LONG_NAME = "umt-marketing-platform-primary-database-schema-migration-for-the-eu-west-region"
#: Two names whose Jobs had one name under the former naming scheme (tests/unit/test_jobs.py).
COLLIDING = ("umt-marketing-platform-primary-database-production-eu-16518",
             "umt-marketing-platform-primary-database-production-eu-16947")


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return two_releases(tmp_path_factory)


@pytest.fixture
def operator(emulator: Emulator, kopf_operator: Any, registry: Any,
             settings: Any, kubelet: FakeKubelet) -> Iterator[Operator]:
    """The operator watching the tenant's namespace and another tenant's."""
    op = Operator(emulator, kopf_operator, registry, settings, namespaces=(NS, EVIL))
    op.start()
    yield op
    op.stop()


def forged_job(victim_job: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A copy of the victim's Job in another namespace: same name, labels and owner
    annotations, another image, and a container that writes ``report`` as its result."""
    meta = victim_job["metadata"]
    script = ("import os, sys; open(os.environ['TERMINATION_MESSAGE_PATH'], 'w')"
              f".write({json.dumps(json.dumps(report))})")
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": meta["name"], "labels": dict(meta["labels"]),
                     "annotations": {**meta["annotations"],
                                     "migrations.umt.dev/image": EVIL_IMAGE}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": dict(victim_job["spec"]["template"]["metadata"]["labels"])},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "migrate", "image": EVIL_IMAGE,
                "command": [sys.executable, "-c", script]}]}}},
    }


def events_on(emulator: Emulator, name: str) -> list[dict[str, Any]]:
    return [e for e in emulator.list(EVENTS, NS)
            if (e.get("involvedObject") or {}).get("name") == name]


def test_a_forged_job_in_another_namespace_changes_nothing(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 1: a tenant's Job in namespace `evil`, named and annotated like the victim's,
    ends with a success report: the victim's status is unchanged (a Warning Event names the
    foreign Job), and a later downgrade never runs the forged image."""
    add_migration(emulator, image=NEW_IMAGE)  # no Secret yet: the pod cannot start
    stalled = wait_condition(emulator, "umt-schema", "Stalled", "SecretNotFound")
    (victim_job,) = jobs_of(emulator, "umt-schema")
    report = {"ok": True, "direction": "upgrade", "fromRevision": None, "toRevision": HEAD,
              "targetRevision": HEAD, "applied": REVISION_IDS, "durationSeconds": 0.1}
    emulator.create(JOBS, EVIL, forged_job(victim_job, report))
    name = victim_job["metadata"]["name"]
    emulator.wait_for(lambda: (emulator.get(JOBS, EVIL, name) or {}).get("status", {})
                      .get("succeeded"), timeout=30, message="the forged Job succeeds")
    warning = emulator.wait_for(lambda: next(
        (e for e in events_on(emulator, "umt-schema") if e["reason"] == "ForeignJobIgnored"),
        None), timeout=30, message="a Warning Event about the foreign Job")
    assert warning["type"] == "Warning" and f"{EVIL}/{name}" in warning["message"]
    assert warning["involvedObject"]["kind"] == "SchemaMigration"
    status = emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema")["status"]
    assert condition({"status": status}, "Ready")["status"] == "False"
    assert condition({"status": status}, "Stalled")["reason"] == "SecretNotFound"
    assert "appliedImage" not in status and "currentRevision" not in status
    assert status == stalled["status"]

    add_secret(emulator, pg_url)  # the victim's own Job now runs, with its own image
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert obj["status"]["appliedImage"] == NEW_IMAGE and db_revision(pg_url) == HEAD
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {
        "image": OLD_IMAGE, "targetRevision": REVISION_IDS[1], "allowDowngrade": True}})
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)
    assert obj["status"]["currentRevision"] == REVISION_IDS[1] == db_revision(pg_url)
    images = [j["spec"]["template"]["spec"]["containers"][0]["image"]
              for j in emulator.list(JOBS, NS)]
    assert EVIL_IMAGE not in images and sorted(images) == [OLD_IMAGE, NEW_IMAGE, NEW_IMAGE]
    assert [run.namespace for run in kubelet.runs if EVIL_IMAGE in " ".join(run.argv)] == []


def test_a_recreated_resource_runs_its_own_job(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    """Finding 2: delete and re-create under the same name and spec: a new Job runs and the
    database really moves (it was moved back meanwhile), instead of the old Job's verdict."""
    add_secret(emulator, pg_url)
    add_migration(emulator)
    first = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert db_revision(pg_url) == HEAD
    subprocess.run([sys.executable, "-m", "umt_migrations", "downgrade", REVISION_IDS[1],
                    "--url", pg_url], check=True, capture_output=True, timeout=120)
    assert db_revision(pg_url) == REVISION_IDS[1]
    emulator.delete(SCHEMA_MIGRATIONS, NS, "umt-schema")
    emulator.wait_for(lambda: emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema") is None)
    add_migration(emulator)
    second = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["status"]["jobName"] != first["status"]["jobName"]
    assert second["status"]["appliedRevisions"] == REVISION_IDS[2:]
    assert db_revision(pg_url) == HEAD and kubelet.processes_started == 2
    assert len(jobs_of(emulator, "umt-schema")) == 2


def test_names_that_collided_get_distinct_jobs(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_factory: Any) -> None:
    """Finding 3: two resources whose Jobs shared a name under the former 4-character hash
    each run their own Job against their own database."""
    urls = {}
    for name in COLLIDING:
        urls[name] = pg_factory.create()
        add_secret(emulator, urls[name], name=f"db-{name[-5:]}")
        add_migration(emulator, name=name, database={"urlSecretRef": {"name": f"db-{name[-5:]}"}})
    done = {name: wait_condition(emulator, name, "Ready", "Succeeded") for name in COLLIDING}
    assert len({obj["status"]["jobName"] for obj in done.values()}) == 2
    assert all(db_revision(url) == HEAD for url in urls.values())
    assert all(obj["status"]["appliedRevisions"] == REVISION_IDS for obj in done.values())
    assert kubelet.processes_started == 2


def test_fallback_jobs_of_two_long_names_differ(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_factory: Any) -> None:
    """Finding 3: the downgrade rerun with the previous image (`…-prev`) kept only the first
    58 characters of the Job name: two long names shared it, and one database never moved."""
    names = [f"{LONG_NAME}-one", f"{LONG_NAME}-two"]
    urls = {}
    for index, name in enumerate(names):
        urls[name] = pg_factory.create()
        add_secret(emulator, urls[name], name=f"db-{index}")
        add_migration(emulator, name=name, image=NEW_IMAGE,
                      database={"urlSecretRef": {"name": f"db-{index}"}})
    for name in names:
        wait_condition(emulator, name, "Ready", "Succeeded")
        emulator.patch(SCHEMA_MIGRATIONS, NS, name, {"spec": {
            "image": OLD_IMAGE, "targetRevision": REVISION_IDS[1], "allowDowngrade": True}})
    done = [wait_condition(emulator, name, "Ready", "Succeeded", generation=2) for name in names]
    fallbacks = [obj["status"]["jobName"] for obj in done]
    assert all(job.endswith("-prev") for job in fallbacks) and fallbacks[0] != fallbacks[1]
    assert [db_revision(urls[name]) for name in names] == [REVISION_IDS[1]] * 2


def the_job_the_operator_would_create(emulator: Emulator, settings: Any) -> dict[str, Any]:
    """A new resource `umt-schema` (the operator stopped), and its first Job as rendered."""
    from umt_operator.jobs import render_job
    from umt_operator.spec import parse_spec

    resource = add_migration(emulator)
    return render_job(name="umt-schema", namespace=NS, uid=resource["metadata"]["uid"],
                      generation=1, spec=parse_spec(resource["spec"]), settings=settings,
                      image=settings.default_image)


def test_a_job_left_by_an_earlier_operator_process_is_adopted(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        settings: Any) -> None:
    """The create-409 path, ours: the operator created the Job and stopped before writing
    status; the next process gets 409 on create and adopts that Job (it is this instance's)."""
    add_secret(emulator, pg_url)
    operator.stop()
    job = the_job_the_operator_would_create(emulator, settings)
    emulator.create(JOBS, NS, job)
    operator.start()
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert obj["status"]["jobName"] == job["metadata"]["name"]
    assert len(jobs_of(emulator, "umt-schema")) == 1 and kubelet.processes_started == 1
    assert "JobCreated" not in [e["reason"] for e in events_on(emulator, "umt-schema")]


def test_a_job_of_that_name_owned_by_another_instance_is_never_adopted(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        settings: Any) -> None:
    """The create-409 path, not ours: a Job squats the name in the resource's namespace with
    another owner uid. It is not adopted: Stalled (JobConflict), nothing of it is read."""
    add_secret(emulator, pg_url)
    operator.stop()
    squatter = the_job_the_operator_would_create(emulator, settings)
    squatter["metadata"]["annotations"]["migrations.umt.dev/owner-uid"] = "someone-else"
    with kubelet.held("umt-schema-*"):
        emulator.create(JOBS, NS, squatter)
        operator.start()
        obj = wait_condition(emulator, "umt-schema", "Stalled", "JobConflict")
    assert squatter["metadata"]["name"] in obj["status"]["message"]
    assert "someone-else" in obj["status"]["message"]
    assert obj["status"]["observedGeneration"] == 1 and "jobName" not in obj["status"]
    emulator.wait_for(lambda: "JobConflict" in [e["reason"]
                                                for e in events_on(emulator, "umt-schema")])
