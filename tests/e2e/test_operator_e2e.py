"""The operator on a real cluster, installed with its Helm chart (see tests/e2e/cluster.py for
what to set). Real apiserver (schema, CEL rules, RBAC, Pod Security), real kubelet and image,
real database. The scenarios run in order and end with `helm uninstall`.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.e2e.cluster import ROOT, Cluster, Databases, eventually, skip_reason
from tests.e2e.conftest import CRD, RELEASE, Installation

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
              pytest.mark.timeout(900)]

_SCRIPTS = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
REVISIONS = [s.revision for s in reversed(list(_SCRIPTS.walk_revisions()))]
HEAD = REVISIONS[-1]
OWNER = "migrations.umt.dev/owner"


# --- helpers -------------------------------------------------------------------------------


def add_secret(op: Installation, name: str, url: str) -> None:
    op.cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                       "stringData": {"url": url}}, op.apps)


def add_migration(op: Installation, name: str, secret: str, **spec: Any) -> None:
    op.cluster.apply({"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
                      "metadata": {"name": name},
                      "spec": {"targetRevision": "head",
                               "database": {"urlSecretRef": {"name": secret, "key": "url"}},
                               **spec}}, op.apps)


def fresh_database(op: Installation, name: str) -> str:
    """A new database and a Secret `name` with its URL; returns the database's name."""
    database, url = op.databases.create(name.replace("-", "_"))
    add_secret(op, name, url)
    return database


def smig(op: Installation, name: str) -> dict[str, Any]:
    found = op.cluster.get("smig", name, "-n", op.apps)
    assert found is not None, f"SchemaMigration {name} is gone"
    return found


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_),
                {})


def wait_for(op: Installation, name: str, type_: str, reason: str, timeout: int = 300) -> dict:
    """`kubectl wait` for the condition (it skips conditions of an older generation), then
    check the reason."""
    op.cluster.kubectl("-n", op.apps, "wait", f"--for=condition={type_}", f"smig/{name}",
                       f"--timeout={timeout}s", timeout=timeout + 30)
    obj = smig(op, name)
    assert condition(obj, type_)["reason"] == reason, obj["status"]
    return obj


def jobs_of(op: Installation, name: str) -> list[dict[str, Any]]:
    jobs = op.cluster.get("jobs", "-n", op.apps)["items"]
    return [j for j in jobs
            if j["metadata"].get("annotations", {}).get(OWNER) == f"{op.apps}/{name}"]


def operator_pods(op: Installation) -> list[dict[str, Any]]:
    pods = op.cluster.get("pods", "-n", op.system, "-l",
                          f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def lease_holder(op: Installation) -> str:
    lease = op.cluster.get("lease", RELEASE, "-n", op.system)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


def runner_waits_for_the_lock(op: Installation, database: str) -> None:
    """The Job's `migrate` is blocked on the migration lock the test holds: mid-migration."""
    eventually(lambda: op.databases.lock_waiters(database) > 0, 300,
               "the Job's runner waiting for the migration lock")


def needs_postgresql(databases: Databases) -> None:
    if databases.dialect != "postgresql":
        pytest.skip(f"holding a Job mid-migration uses PostgreSQL's pg_locks; the server is "
                    f"{databases.dialect}")


# --- the scenarios -------------------------------------------------------------------------


def test_installed_with_least_privilege(operator: Installation, cluster: Cluster) -> None:
    """The real apiserver's view of the chart's RBAC and of the operator's pod."""
    account = f"system:serviceaccount:{operator.system}:{RELEASE}"

    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", *args, f"--as={account}",
                               check=False).stdout.strip()

    assert can("create", "jobs", "-n", operator.apps) == "yes"
    assert can("patch", "schemamigrations.migrations.umt.dev", "--subresource=status",
               "-n", operator.apps) == "yes"
    assert can("get", "secrets", "-n", operator.apps) == "no"
    assert can("create", "jobs", "-n", "default") == "no"  # only the watched namespace
    assert can("update", f"leases/{RELEASE}", "-n", operator.system) == "yes"
    assert can("update", "leases/another", "-n", operator.system) == "no"
    (pod,) = operator_pods(operator)
    assert pod["spec"]["containers"][0]["image"] == operator.target.image
    eventually(lambda: lease_holder(operator) == pod["metadata"]["name"], 60,
               "the operator holds its Lease")


def test_upgrade_to_head_with_one_job(operator: Installation) -> None:
    database = fresh_database(operator, "app1")
    add_migration(operator, "app1", "app1")
    obj = wait_for(operator, "app1", "Ready", "Succeeded")
    assert obj["status"]["currentRevision"] == HEAD == operator.databases.revision(database)
    assert obj["status"]["appliedRevisions"] == REVISIONS
    # Re-applying the same spec and touching metadata change no generation: no second Job.
    add_migration(operator, "app1", "app1")
    operator.cluster.kubectl("-n", operator.apps, "annotate", "smig/app1", "touched=yes")
    operator.cluster.kubectl("-n", operator.system, "rollout", "restart",
                             f"deployment/{RELEASE}")
    operator.cluster.kubectl("-n", operator.system, "rollout", "status",
                             f"deployment/{RELEASE}", "--timeout=300s", timeout=330)
    eventually(lambda: lease_holder(operator) in
               {p["metadata"]["name"] for p in operator_pods(operator)}, 120,
               "the restarted operator holds the Lease")
    assert len(jobs_of(operator, "app1")) == 1
    assert smig(operator, "app1")["status"]["observedGeneration"] == 1
    # Issue 15 §4: `kubectl describe` finds Events by involvedObject kind, name and uid.
    described = operator.cluster.kubectl("-n", operator.apps, "describe", "smig", "app1").stdout
    events = described[described.index("Events:"):]
    assert "JobCreated" in events and "Succeeded" in events, described


def test_downgrade_refused_then_allowed(operator: Installation) -> None:
    database = fresh_database(operator, "app2")
    add_migration(operator, "app2", "app2")
    wait_for(operator, "app2", "Ready", "Succeeded")
    add_migration(operator, "app2", "app2", targetRevision=REVISIONS[1])
    obj = wait_for(operator, "app2", "Stalled", "DowngradeNotAllowed")
    assert operator.databases.revision(database) == HEAD
    assert "allowDowngrade" in obj["status"]["message"]
    add_migration(operator, "app2", "app2", targetRevision=REVISIONS[1], allowDowngrade=True)
    obj = wait_for(operator, "app2", "Ready", "Succeeded")
    assert obj["status"]["direction"] == "downgrade"
    assert operator.databases.revision(database) == REVISIONS[1]
    assert len(jobs_of(operator, "app2")) == 3  # one per generation: the runner refused the 2nd


def test_missing_secret_is_stalled_within_seconds(operator: Installation) -> None:
    started = time.monotonic()
    add_migration(operator, "nosecret", "does-not-exist")
    obj = wait_for(operator, "nosecret", "Stalled", "SecretNotFound", timeout=60)
    print(f"\nStalled (SecretNotFound) after {time.monotonic() - started:.1f} s")
    assert "does-not-exist" in obj["status"]["message"]


def test_unpullable_image_is_reported(operator: Installation) -> None:
    fresh_database(operator, "badimage")  # a tag that does not exist, of an allowed repository
    add_migration(operator, "badimage", "badimage",
                  image=f"{operator.target.repository}:does-not-exist-0.0.0",
                  imagePullPolicy="Always")
    obj = wait_for(operator, "badimage", "Stalled", "ImagePullFailed", timeout=300)
    assert "does-not-exist" in obj["status"]["message"]


def test_delete_leaves_the_database_alone(operator: Installation) -> None:
    database = fresh_database(operator, "app3")
    add_migration(operator, "app3", "app3")
    wait_for(operator, "app3", "Ready", "Succeeded")
    tables = operator.databases.tables(database)
    started = time.monotonic()
    operator.cluster.kubectl("-n", operator.apps, "delete", "smig", "app3", "--timeout=30s")
    assert time.monotonic() - started < 30  # no finalizer holds the deletion
    assert operator.databases.revision(database) == HEAD
    assert operator.databases.tables(database) == tables


def test_operator_pod_deleted_mid_migration(operator: Installation) -> None:
    needs_postgresql(operator.databases)
    database = fresh_database(operator, "app4")
    with operator.databases.locked(database):
        add_migration(operator, "app4", "app4")
        runner_waits_for_the_lock(operator, database)
        operator.cluster.kubectl("-n", operator.system, "delete", "pod", "-l",
                                 f"app.kubernetes.io/instance={RELEASE}", "--timeout=120s")
        operator.cluster.kubectl("-n", operator.system, "rollout", "status",
                                 f"deployment/{RELEASE}", "--timeout=300s", timeout=330)
    obj = wait_for(operator, "app4", "Ready", "Succeeded")
    assert obj["status"]["currentRevision"] == HEAD == operator.databases.revision(database)
    (job,) = jobs_of(operator, "app4")
    assert job["status"].get("succeeded") == 1


def test_ha_failover(operator: Installation) -> None:
    needs_postgresql(operator.databases)
    operator.upgrade("--set", "replicaCount=2")
    budget = operator.cluster.get("pdb", RELEASE, "-n", operator.system)
    assert budget is not None and budget["spec"]["maxUnavailable"] == 1
    pods = eventually(lambda: len(operator_pods(operator)) == 2 and operator_pods(operator),
                      300, "two operator replicas")
    leader = eventually(lambda: lease_holder(operator), 120, "a leader")
    assert leader in {p["metadata"]["name"] for p in pods}

    database = fresh_database(operator, "app5")
    with operator.databases.locked(database):
        add_migration(operator, "app5", "app5")
        runner_waits_for_the_lock(operator, database)
        killed = time.monotonic()
        # What a node drain does to the leader: a graceful delete (SIGTERM).
        operator.cluster.kubectl("-n", operator.system, "delete", "pod", leader, "--wait=false")
        standby = eventually(lambda: lease_holder(operator) not in ("", leader)
                             and lease_holder(operator), 60, "the standby takes the Lease")
        print(f"\n{standby} took over {time.monotonic() - killed:.1f} s after {leader} "
              "was deleted")
    obj = wait_for(operator, "app5", "Ready", "Succeeded")
    assert obj["status"]["currentRevision"] == HEAD == operator.databases.revision(database)
    assert len(jobs_of(operator, "app5")) == 1
    assert lease_holder(operator) == standby


# --- issue 13: one namespace cannot touch another; refusals are reported ----------------------


def events_of(op: Installation, name: str, reason: str) -> list[dict[str, Any]]:
    return op.cluster.get("events", "-n", op.apps, "--field-selector",
                          f"involvedObject.kind=SchemaMigration,involvedObject.name={name},"
                          f"reason={reason}")["items"]


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one RFC 3339 timestamp to another (whole seconds, as both are written)."""
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (parse(later) - parse(earlier)).total_seconds()


def test_a_recreated_resource_runs_a_new_job(operator: Installation) -> None:
    """Issue 13, finding 2: delete + re-create with the same name and spec runs a new Job
    (it used to adopt the old one by name and report its verdict)."""
    fresh_database(operator, "app6")
    add_migration(operator, "app6", "app6")
    first = wait_for(operator, "app6", "Ready", "Succeeded")
    operator.cluster.kubectl("-n", operator.apps, "delete", "smig", "app6", "--timeout=30s")
    add_migration(operator, "app6", "app6")
    second = wait_for(operator, "app6", "Ready", "Succeeded")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["status"]["jobName"] != first["status"]["jobName"]
    job = operator.cluster.get("job", second["status"]["jobName"], "-n", operator.apps)
    assert job["metadata"]["annotations"]["migrations.umt.dev/owner-uid"] == \
        second["metadata"]["uid"]
    assert job["status"].get("succeeded") == 1
    assert second["status"]["direction"] == "none"  # its own run found the database at head


def test_a_forged_job_in_another_namespace_changes_nothing(operator: Installation) -> None:
    """Issue 13, finding 1: a tenant copies the victim's Job (name, labels, owner
    annotations) into its own namespace, with a success report: the victim stays Stalled and
    gets a Warning Event naming the foreign Job."""
    add_migration(operator, "victim", "victim-secret-missing")
    stalled = wait_for(operator, "victim", "Stalled", "SecretNotFound", timeout=120)
    (real,) = jobs_of(operator, "victim")
    report = json.dumps({"ok": True, "direction": "upgrade", "fromRevision": None,
                         "toRevision": HEAD, "targetRevision": HEAD, "applied": REVISIONS})
    script = f"open('/dev/termination-log', 'w').write({report!r})"
    operator.cluster.apply({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": real["metadata"]["name"], "labels": real["metadata"]["labels"],
                     "annotations": {**real["metadata"]["annotations"],
                                     "migrations.umt.dev/image": "evil.example/steal:1"}},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": real["spec"]["template"]["metadata"]["labels"]},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{
                         "name": "migrate", "image": operator.target.image,
                         "imagePullPolicy": "IfNotPresent",
                         "command": ["python", "-c", script],
                         "securityContext": {"allowPrivilegeEscalation": False,
                                             "capabilities": {"drop": ["ALL"]}}}]}}},
    }, operator.other)
    eventually(lambda: (operator.cluster.get("job", real["metadata"]["name"], "-n",
                                             operator.other) or {}).get("status", {})
               .get("succeeded"), 300, "the forged Job succeeds")
    warning = eventually(lambda: events_of(operator, "victim", "ForeignJobIgnored"), 60,
                         "a Warning Event naming the foreign Job")
    assert f"{operator.other}/{real['metadata']['name']}" in warning[0]["message"]
    after = smig(operator, "victim")
    assert condition(after, "Stalled")["reason"] == "SecretNotFound"
    assert condition(after, "Ready")["status"] == "False"
    assert "appliedImage" not in after["status"] and "currentRevision" not in after["status"]
    assert after["status"]["conditions"] == stalled["status"]["conditions"]


def test_an_image_with_a_trailing_space_is_refused_within_seconds(
        operator: Installation) -> None:
    """Issue 13, finding 5: the CRD refuses it at apply time (CEL rule); with a CRD installed
    by an older release, the Job controller's refusal of the pod is reported (PodRejected)."""
    fresh_database(operator, "spaced")
    manifest = {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
                "metadata": {"name": "spaced"},
                "spec": {"targetRevision": "head", "image": f"{operator.target.image} ",
                         "database": {"urlSecretRef": {"name": "spaced", "key": "url"}}}}
    started = time.monotonic()
    applied = operator.cluster.kubectl("-n", operator.apps, "apply", "-f", "-",
                                       input=json.dumps(manifest), check=False)
    if applied.returncode != 0:
        assert "whitespace" in applied.stderr, applied.stderr
        print(f"\nrefused by the CRD in {time.monotonic() - started:.1f} s")
        return
    obj = wait_for(operator, "spaced", "Stalled", "PodRejected", timeout=60)
    assert "whitespace" in obj["status"]["message"]


def test_a_pod_security_violation_is_reported_within_seconds(operator: Installation) -> None:
    """Issue 13, finding 5: the namespace enforces `restricted`; an unconfined AppArmor
    profile through job.podAnnotations makes the Job controller's pod creation fail
    (FailedCreate). The resource is Stalled (PodRejected) within seconds of that Event."""
    fresh_database(operator, "unconfined")
    add_migration(operator, "unconfined", "unconfined", job={"podAnnotations": {
        "container.apparmor.security.beta.kubernetes.io/migrate": "unconfined"}})
    obj = wait_for(operator, "unconfined", "Stalled", "PodRejected", timeout=60)
    assert "PodSecurity" in obj["status"]["message"], obj["status"]["message"]
    job = obj["status"].get("jobName") or jobs_of(operator, "unconfined")[0]["metadata"]["name"]
    refusals = operator.cluster.get("events", "-n", operator.apps, "--field-selector",
                                    f"involvedObject.kind=Job,involvedObject.name={job},"
                                    "reason=FailedCreate")["items"]
    first = min(e.get("firstTimestamp") or e["eventTime"] for e in refusals)
    reported = condition(obj, "Stalled")["lastTransitionTime"]
    delay = seconds_between(first, reported)
    print(f"\nPodRejected {delay:.0f} s after the first FailedCreate Event")
    assert delay <= 5


def test_a_policy_denied_image_gets_no_job(operator: Installation) -> None:
    """Issue 13, finding 7: by default only the operator's own image repository may run."""
    add_migration(operator, "elsewhere", "elsewhere", image="registry.invalid/other/tool:1")
    obj = wait_for(operator, "elsewhere", "Stalled", "PolicyDenied", timeout=60)
    assert "registry.invalid/other/tool:1" in obj["status"]["message"]
    assert jobs_of(operator, "elsewhere") == []


def test_uninstall_is_clean_and_keeps_the_crd_and_databases(operator: Installation) -> None:
    kept = smig(operator, "app1")
    operator.uninstall()
    cluster = operator.cluster
    release = f"app.kubernetes.io/instance={RELEASE}"

    def left_behind() -> list[str]:
        found = cluster.get("all,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
                            "-n", operator.system, "-l", release)["items"]
        found += cluster.get("roles,rolebindings", "-n", operator.apps, "-l", release)["items"]
        return [f"{o['kind']}/{o['metadata']['name']}" for o in found]

    # pods and ReplicaSets go with the Deployment, in the background
    eventually(lambda: not left_behind(), 180, "every object of the release deleted")
    assert cluster.get("clusterrole", RELEASE) is None
    assert cluster.get("clusterrolebinding", RELEASE) is None
    if operator.crd_created:  # helm.sh/resource-policy: keep
        assert cluster.get("crd", CRD) is not None
        assert smig(operator, "app1")["metadata"]["uid"] == kept["metadata"]["uid"]
    database = next(name for name in operator.databases.created if "_app1_" in name)
    assert operator.databases.revision(database) == HEAD
