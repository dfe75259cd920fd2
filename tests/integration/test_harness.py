"""The Kubernetes test harness itself: the API emulator, the fake Job controller and kubelet,
real `kubectl`/`helm`/`kubernetes` clients against it, and kopf run through `run_kopf`.

Operator tests build on these behaviours; if one breaks here, the failure is the harness's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import kmock
import kopf
import kubernetes.client
import kubernetes.watch
import pytest

from tests.k8s.apimachinery import ApiError
from tests.k8s.emulator import (
    CRDS,
    EVENTS,
    JOBS,
    NAMESPACES,
    PODS,
    RESOURCE_QUOTAS,
    SCHEMA_MIGRATIONS,
    SECRETS,
    Emulator,
)
from tests.k8s.kubelet import FakeKubelet

pytestmark = pytest.mark.integration

NS = "default"
REPORT = {"ok": True, "direction": "upgrade", "toRevision": "abc123"}


def python_job(name: str, script: str, *, spec: dict[str, Any] | None = None,
               env: list[dict[str, Any]] | None = None, image: str = "registry/umt:1.0",
               policy: str = "File") -> dict[str, Any]:
    """A Job whose container runs `python -c script` locally."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            **(spec or {}),
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "migrate", "image": image, "env": env or [],
                    "command": [sys.executable, "-c", textwrap.dedent(script)],
                    "terminationMessagePolicy": policy,
                }],
            }},
        },
    }


def exit_with_report(code: int, report: dict[str, Any]) -> str:
    return f"""
        import json, os, sys
        with open(os.environ["TERMINATION_MESSAGE_PATH"], "w") as f:
            f.write(json.dumps({report!r}, separators=(",", ":")))
        sys.exit({code})
    """


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind and item["status"] == "True":
            return item
    return None


def wait_job(cluster: Emulator, name: str, kind: str, timeout: float = 5) -> dict[str, Any]:
    return cluster.wait_for_object(JOBS, NS, name, lambda job: condition(job, kind), timeout)


def job_events(cluster: Emulator, job: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Job's Events, oldest first."""
    events = cluster.list(EVENTS, NS, fields=f"involvedObject.kind=Job,involvedObject.name={job}")
    ordered = sorted(events, key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["type"], e["reason"], e["message"]) for e in ordered]


def job_pods(cluster: Emulator, job: str) -> list[dict[str, Any]]:
    return cluster.list(PODS, NS, labels={"job-name": job})


def container_state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def waiting_pod(cluster: Emulator, job: str, reasons: set[str]) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((pod for pod in job_pods(cluster, job)
                     if container_state(pod).get("waiting", {}).get("reason") in reasons), None)

    return cluster.wait_for(find, message=f"a pod of {job} waiting with {reasons}")


def make_secret(cluster: Emulator, name: str = "umt-db", **data: str) -> None:
    cluster.create(SECRETS, NS, {"metadata": {"name": name}, "stringData": data})


DB_URL_ENV = [{"name": "DATABASE_URL",
               "valueFrom": {"secretKeyRef": {"name": "umt-db", "key": "url"}}}]


# --- The fake Job controller and kubelet ------------------------------------------------------


def test_successful_job_completes_and_keeps_the_termination_message(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    make_secret(emulator, url="postgresql://u:p@db/umt")
    script = f"""
        import json, os
        report = {{**{REPORT!r}, "url": os.environ["DATABASE_URL"]}}
        with open(os.environ["TERMINATION_MESSAGE_PATH"], "w") as f:
            f.write(json.dumps(report))
    """
    emulator.create(JOBS, NS, python_job("ok", script, env=DB_URL_ENV))

    job = wait_job(emulator, "ok", "Complete")

    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert job["status"]["succeeded"] == 1 and "active" not in job["status"]
    assert job["status"]["completionTime"] and job["status"]["startTime"]
    (pod,) = job_pods(emulator, "ok")
    assert pod["metadata"]["name"].startswith("ok-") and len(pod["metadata"]["name"]) == 8
    assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert pod["status"]["phase"] == "Succeeded"
    terminated = container_state(pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert json.loads(terminated["message"]) == {**REPORT, "url": "postgresql://u:p@db/umt"}
    assert kubelet.processes_started == 1
    assert job_events(emulator, "ok") == [
        ("Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"),
        ("Normal", "Completed", "Job completed")]


def test_fail_job_rule_fails_the_job_after_one_pod(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    policy = {"rules": [{"action": "FailJob",
                         "onExitCodes": {"operator": "In", "values": [2, 3]}}]}
    emulator.create(JOBS, NS, python_job("bad", exit_with_report(3, {"ok": False}), spec={
        "backoffLimit": 4, "podFailurePolicy": policy}))

    job = wait_job(emulator, "bad", "Failed")

    (pod,) = job_pods(emulator, "bad")
    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "PodFailurePolicy"
    assert failed["message"] == (f"Container migrate for pod {NS}/{pod['metadata']['name']} "
                                 "failed with exit code 3 matching FailJob rule at index 0")
    assert job["status"]["failed"] == 1
    seen = [[c["type"] for c in version.get("status", {}).get("conditions", [])]
            for version in emulator.history(JOBS, NS, "bad")]
    assert ["FailureTarget"] in seen and seen[-1] == ["FailureTarget", "Failed"]
    assert container_state(pod)["terminated"]["exitCode"] == 3
    assert kubelet.processes_started == 1


def test_transient_failures_retry_up_to_the_backoff_limit(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    emulator.create(JOBS, NS, python_job("flaky", "import sys; sys.exit(1)",
                                         spec={"backoffLimit": 1}))

    job = wait_job(emulator, "flaky", "Failed")

    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"  # type: ignore[index]
    assert job["status"]["failed"] == 2
    assert len(job_pods(emulator, "flaky")) == 2
    assert [run.exit_code for run in kubelet.runs_for("flaky")] == [1, 1]


def test_missing_secret_or_key_blocks_the_container_like_a_kubelet(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    emulator.create(JOBS, NS, python_job("nosecret", "pass", env=DB_URL_ENV))

    pod = waiting_pod(emulator, "nosecret", {"CreateContainerConfigError"})
    assert container_state(pod)["waiting"]["message"] == 'secret "umt-db" not found'

    make_secret(emulator, password="x")  # the Secret, but not the key
    emulator.wait_for(lambda: container_state(job_pods(emulator, "nosecret")[0])["waiting"]
                      .get("message") == f"couldn't find key url in Secret {NS}/umt-db")
    assert emulator.get(JOBS, NS, "nosecret")["status"]["active"] == 1  # type: ignore[index]
    assert kubelet.processes_started == 0

    emulator.patch(SECRETS, NS, "umt-db", {"stringData": {"url": "sqlite://"}})
    wait_job(emulator, "nosecret", "Complete")
    assert kubelet.processes_started == 1


def test_unpullable_image_never_runs(emulator: Emulator, kubelet: FakeKubelet) -> None:
    emulator.create(JOBS, NS, python_job("noimage", "pass", image="registry/does-not-exist:1"))

    pod = waiting_pod(emulator, "noimage", {"ErrImagePull", "ImagePullBackOff"})

    assert "registry/does-not-exist:1" in container_state(pod)["waiting"]["message"]
    assert pod["status"]["phase"] == "Pending"
    assert kubelet.processes_started == 0


def test_active_deadline_kills_the_process(emulator: Emulator, kubelet: FakeKubelet) -> None:
    """The Job controller deletes the active pod (job_controller.go `deleteActivePods`),
    counts it failed; the kubelet kills the deleted pod's process."""
    emulator.create(JOBS, NS, python_job("slow", "import time; time.sleep(60)",
                                         spec={"activeDeadlineSeconds": 1}))

    job = wait_job(emulator, "slow", "Failed", timeout=10)

    failed = condition(job, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"
    assert failed["message"] == "Job was active longer than specified deadline"
    assert job["status"]["failed"] == 1 and "active" not in job["status"]
    assert job_pods(emulator, "slow") == []
    (run,) = kubelet.runs_for("slow")
    emulator.wait_for(lambda: run.exit_code is not None, message="the process killed")
    assert run.exit_code == 143
    assert [reason for _, reason, _ in job_events(emulator, "slow")] == [
        "SuccessfulCreate", "SuccessfulDelete", "DeadlineExceeded"]


def test_the_job_controller_follows_pods_through_the_api(
        emulator: Emulator, job_controller: Any) -> None:
    """The Job controller is its own fixture: without a kubelet, a pod whose status a test
    writes drives the Job as the kubelet's would (ready, then succeeded)."""
    emulator.create(JOBS, NS, python_job("manual", "pass"))
    (pod,) = emulator.wait_for(lambda: job_pods(emulator, "manual"))
    name = pod["metadata"]["name"]

    emulator.patch_status(PODS, NS, name, {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]})
    emulator.wait_for_object(JOBS, NS, "manual", lambda job: job["status"].get("ready") == 1)
    emulator.patch_status(PODS, NS, name, {"phase": "Succeeded", "conditions": [
        {"type": "Ready", "status": "False"}], "containerStatuses": [{
            "name": "migrate", "state": {"terminated": {"exitCode": 0, "message": "ok"}}}]})
    job = wait_job(emulator, "manual", "Complete")
    assert job["status"]["succeeded"] == 1


def test_fallback_to_logs_on_error_uses_the_output_tail(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    script = "import sys; print('\\n'.join(f'line {i}' for i in range(200))); sys.exit(2)"
    emulator.create(JOBS, NS, python_job("logs", script, policy="FallbackToLogsOnError"))

    wait_job(emulator, "logs", "Failed")

    message = container_state(job_pods(emulator, "logs")[0])["terminated"]["message"]
    assert message.splitlines()[-1] == "line 199"
    assert len(message.splitlines()) == 80 and len(message.encode()) <= 2048


@pytest.mark.parametrize("kubelet_options", [{
    "command_map": {"toy-runner": [sys.executable, "-c"]},
    "path_map": {"/app": "/srv/checkout"},
}])
def test_commands_and_paths_are_mapped_to_local_ones(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    script = ("import os, sys; open(os.environ['TERMINATION_MESSAGE_PATH'], 'w')"
              ".write(' '.join(sys.argv[1:] + [os.environ['CONFIG']]))")
    job = python_job("mapped", "", env=[{"name": "TARGET", "value": "head"},
                                        {"name": "CONFIG", "value": "/app/alembic.ini"}])
    job["spec"]["template"]["spec"]["containers"][0].update(
        command=["toy-runner", script], args=["--to", "$(TARGET)", "--config=/app/x.ini"])
    emulator.create(JOBS, NS, job)

    wait_job(emulator, "mapped", "Complete")

    message = container_state(job_pods(emulator, "mapped")[0])["terminated"]["message"]
    assert message == "--to head --config=/srv/checkout/x.ini /srv/checkout/alembic.ini"


def test_held_job_looks_running_until_released(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    with kubelet.held("held-*"):
        emulator.create(JOBS, NS, python_job("held-1", exit_with_report(0, REPORT)))
        job = emulator.wait_for_object(JOBS, NS, "held-1",
                                       lambda job: job.get("status", {}).get("ready") == 1)
        assert job["status"]["active"] == 1 and condition(job, "Complete") is None
        assert job_pods(emulator, "held-1")[0]["status"]["phase"] == "Running"
        assert kubelet.processes_started == 0

    wait_job(emulator, "held-1", "Complete")
    assert kubelet.processes_started == 1


@pytest.mark.parametrize(("propagation", "killed"), [("Background", True), ("Orphan", False)])
def test_deleting_a_running_job(emulator: Emulator, kubelet: FakeKubelet, tmp_path: Any,
                                propagation: str, killed: bool) -> None:
    gate = tmp_path / "go"
    script = f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.01)
    """
    emulator.create(JOBS, NS, python_job("busy", script))
    emulator.wait_for(lambda: kubelet.processes_started == 1)
    (pod,) = job_pods(emulator, "busy")

    emulator.delete(JOBS, NS, "busy", propagation=propagation)

    name = pod["metadata"]["name"]
    if killed:
        emulator.wait_for(lambda: kubelet.runs[0].exit_code is not None)
        assert kubelet.runs[0].exit_code == 143
        assert emulator.get(PODS, NS, name) is None
    else:
        orphan = emulator.get(PODS, NS, name)
        assert orphan is not None and "ownerReferences" not in orphan["metadata"]
        gate.touch()
        emulator.wait_for_object(PODS, NS, name,
                                 lambda pod: pod["status"].get("phase") == "Succeeded")


def test_deleting_an_owner_collects_its_jobs_and_pods(emulator: Emulator) -> None:
    owner = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    job = python_job("s1-1", "pass")
    job["metadata"]["ownerReferences"] = [{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": "s1",
        "uid": owner["metadata"]["uid"], "controller": True}]
    job = emulator.create(JOBS, NS, job)
    emulator.create(PODS, NS, {
        "metadata": {"name": "s1-1-abcde", "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "Job", "name": "s1-1",
            "uid": job["metadata"]["uid"]}]},
        "spec": {"containers": [{"name": "migrate", "image": "x"}]}})

    emulator.delete(SCHEMA_MIGRATIONS, NS, "s1")

    assert emulator.list(JOBS, NS) == [] and emulator.list(PODS, NS) == []


def test_job_pod_template_is_immutable_and_needs_a_restart_policy(emulator: Emulator) -> None:
    emulator.create(JOBS, NS, python_job("fixed", "pass"))
    with pytest.raises(ApiError, match="field is immutable"):
        emulator.patch(JOBS, NS, "fixed", {"spec": {"template": {"spec": {
            "containers": [{"name": "migrate", "image": "other"}]}}}})
    bad = python_job("bad", "pass")
    del bad["spec"]["template"]["spec"]["restartPolicy"]
    with pytest.raises(ApiError, match="restartPolicy"):
        emulator.create(JOBS, NS, bad)


# --- API semantics ----------------------------------------------------------------------------


def smig(name: str, target: str = "head") -> dict[str, Any]:
    return {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "metadata": {"name": name},
            "spec": {"targetRevision": target, "database": {"urlSecretRef": {"name": "umt-db"}}}}


def test_create_fills_in_server_metadata_and_schema_defaults(emulator: Emulator) -> None:
    created = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))

    meta = created["metadata"]
    assert meta["namespace"] == NS and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert created["status"] == {"observedGeneration": -1}  # the CRD's status default
    assert created["spec"]["database"]["urlSecretRef"]["key"] == "url"
    assert created["spec"]["allowDowngrade"] is False


def test_generation_bumps_on_spec_changes_only(emulator: Emulator) -> None:
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))

    status = emulator.patch_status(SCHEMA_MIGRATIONS, NS, "s1", {"observedGeneration": 1,
                                                                 "phase": "Pending"})
    assert status["metadata"]["generation"] == 1
    ignored = emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"status": {"phase": "Failed"}})
    assert ignored["status"]["phase"] == "Pending"  # the main resource ignores status
    labelled = emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    changed = emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "abc"}})
    assert changed["metadata"]["generation"] == 2
    via_status = emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "x"}},
                                subresource="status")
    assert via_status["spec"]["targetRevision"] == "abc"  # /status ignores spec
    rvs = [int(v["metadata"]["resourceVersion"])
           for v in emulator.history(SCHEMA_MIGRATIONS, NS, "s1")]
    assert rvs == sorted(set(rvs)) and len(rvs) == 4  # create + 3 real writes; no-ops skipped


def test_only_kinds_with_a_generation_get_one(emulator: Emulator) -> None:
    """Pods, Jobs and custom resources have `metadata.generation`; Secrets, ConfigMaps and
    Leases have none (their strategies never set it), whatever changes."""
    secret = emulator.create(SECRETS, NS, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    changed = emulator.patch(SECRETS, NS, "s", {"stringData": {"k": "w"}})
    assert "generation" not in secret["metadata"] and "generation" not in changed["metadata"]
    assert emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))["metadata"]["generation"] == 1


def test_finalizers_hold_deletion_until_removed(emulator: Emulator) -> None:
    body = smig("s1")
    body["metadata"]["finalizers"] = ["umt.dev/test"]
    emulator.create(SCHEMA_MIGRATIONS, NS, body)

    marked = emulator.delete(SCHEMA_MIGRATIONS, NS, "s1")
    assert marked["metadata"]["deletionTimestamp"]
    assert emulator.get(SCHEMA_MIGRATIONS, NS, "s1") is not None

    emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"metadata": {"finalizers": None}})
    assert emulator.get(SCHEMA_MIGRATIONS, NS, "s1") is None


def test_generate_name_and_label_selectors(emulator: Emulator, k8s_api: Any) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api)
    for app in ("a", "a", "b"):
        core.create_namespaced_config_map(NS, {"metadata": {"generateName": "cfg-",
                                                            "labels": {"app": app}}})

    names = {item.metadata.name for item in core.list_namespaced_config_map(NS).items}
    selected = core.list_namespaced_config_map(NS, label_selector="app=a").items
    excluded = core.list_namespaced_config_map(NS, label_selector="app!=a").items
    in_set = core.list_namespaced_config_map(NS, label_selector="app in (b, c)").items

    assert len(names) == 3 and all(name.startswith("cfg-") for name in names)
    assert len(selected) == 2 and len(excluded) == 1 and len(in_set) == 1


def test_stale_resource_version_is_a_conflict(emulator: Emulator, k8s_api: Any) -> None:
    created = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "abc"}})
    custom = kubernetes.client.CustomObjectsApi(k8s_api)

    with pytest.raises(kubernetes.client.ApiException) as error:
        custom.patch_namespaced_custom_object(
            "migrations.umt.dev", "v1alpha1", NS, "schemamigrations", "s1",
            {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
             "spec": {"targetRevision": "def"}})
    assert error.value.status == 409


def test_stale_resource_version_in_an_apply_is_a_conflict(
        emulator: Emulator, k8s_api: Any) -> None:
    """A resourceVersion in an applied object is a precondition, as in any patch (the patched
    object carries it to the update: kubernetes/kubernetes#63104); `force` overrides field
    ownership, never the precondition."""
    created = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "abc"}})
    custom = kubernetes.client.CustomObjectsApi(k8s_api)

    def apply(resource_version: str) -> Any:  # the client's own type: object
        body = smig("s1", target="def")
        body["metadata"]["resourceVersion"] = resource_version
        return custom.patch_namespaced_custom_object(
            "migrations.umt.dev", "v1alpha1", NS, "schemamigrations", "s1", body,
            field_manager="umt-harness", force=True,
            _content_type="application/apply-patch+yaml")

    with pytest.raises(kubernetes.client.ApiException) as error:
        apply(created["metadata"]["resourceVersion"])
    assert error.value.status == 409
    assert "the object has been modified" in json.loads(error.value.body)["message"]
    current = emulator.get(SCHEMA_MIGRATIONS, NS, "s1")
    assert current is not None and current["spec"]["targetRevision"] == "abc"
    assert apply(current["metadata"]["resourceVersion"])["spec"]["targetRevision"] == "def"


def test_injected_api_failures_change_nothing(emulator: Emulator, k8s_api: Any) -> None:
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    failing = emulator.server[kmock.method.PATCH, kmock.resource(SCHEMA_MIGRATIONS)] << 500
    custom = kubernetes.client.CustomObjectsApi(k8s_api)

    with pytest.raises(kubernetes.client.ApiException) as error:
        custom.patch_namespaced_custom_object("migrations.umt.dev", "v1alpha1", NS,
                                              "schemamigrations", "s1",
                                              {"spec": {"targetRevision": "abc"}})

    assert error.value.status == 500 and len(failing) == 1
    unchanged = emulator.get(SCHEMA_MIGRATIONS, NS, "s1")
    assert unchanged is not None and unchanged["spec"]["targetRevision"] == "head"


def test_watch_resumes_from_the_listed_version_without_replay(
        emulator: Emulator, k8s_api: Any) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s_api)
    args = ("migrations.umt.dev", "v1alpha1", NS, "schemamigrations")
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("old-1"))
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("old-2"))
    listed = custom.list_namespaced_custom_object(*args)
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("new"))
    emulator.patch(SCHEMA_MIGRATIONS, NS, "old-1", {"spec": {"targetRevision": "abc"}})

    watch = kubernetes.watch.Watch()
    stream = watch.stream(custom.list_namespaced_custom_object, *args, timeout_seconds=5,
                          resource_version=listed["metadata"]["resourceVersion"])
    seen = [(event["type"], event["object"]["metadata"]["name"])
            for _, event in zip(range(2), stream, strict=False)]
    watch.stop()

    assert {item["metadata"]["name"] for item in listed["items"]} == {"old-1", "old-2"}
    assert int(listed["metadata"]["resourceVersion"]) == max(
        int(item["metadata"]["resourceVersion"]) for item in listed["items"])
    assert seen == [("ADDED", "new"), ("MODIFIED", "old-1")]


def test_watch_without_version_starts_with_existing_objects(
        emulator: Emulator, k8s_api: Any) -> None:
    custom = kubernetes.client.CustomObjectsApi(k8s_api)
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    watch = kubernetes.watch.Watch()

    first = next(iter(watch.stream(custom.list_namespaced_custom_object, "migrations.umt.dev",
                                   "v1alpha1", NS, "schemamigrations",
                                   resource_version="0")))
    watch.stop()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "s1")


def test_request_log_stays_bounded(emulator: Emulator, k8s_api: Any) -> None:
    core = kubernetes.client.CoreV1Api(k8s_api)
    for _ in range(emulator.server.request_log_size + 30):
        core.list_namespaced_pod(NS)
    assert len(emulator.server._requests) == emulator.server.request_log_size


# --- Real clients -----------------------------------------------------------------------------


def test_kubectl_get_patch_and_wait(emulator: Emulator, kubectl: Any) -> None:
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))

    header, row = kubectl("get", "smig").stdout.splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "TARGET", "CURRENT", "AGE"]
    assert row.split()[:2] == ["s1", "head"]  # unset columns print empty, as on a real cluster

    kubectl("patch", "smig", "s1", "--type=merge", "-p", '{"spec":{"targetRevision":"abc"}}')
    patched = emulator.get(SCHEMA_MIGRATIONS, NS, "s1")
    assert patched["spec"]["targetRevision"] == "abc"  # type: ignore[index]
    assert patched["metadata"]["generation"] == 2  # type: ignore[index]

    waiter = kubectl.popen("wait", "--for=condition=Ready", "--timeout=10s", "smig/s1")
    try:
        emulator.wait_for(lambda: emulator.watchers(SCHEMA_MIGRATIONS) > 0 or waiter.poll(),
                          timeout=10, message="kubectl wait watching")
        emulator.patch_status(SCHEMA_MIGRATIONS, NS, "s1", {
            "observedGeneration": 2, "currentRevision": "abc", "jobName": "s1-2",
            "message": "at abc", "conditions": [{
                "type": "Ready", "status": "True", "reason": "Succeeded", "message": "at abc",
                "observedGeneration": 2, "lastTransitionTime": "2025-01-01T00:00:00Z"}]})
        out, err = waiter.communicate(timeout=15)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    assert "condition met" in out
    # kubectl 1.35 waits through a watch-list (sendInitialEvents), answered as the apiserver does
    assert any(params.get("sendInitialEvents") == "true"
               for params in emulator.watch_requests(SCHEMA_MIGRATIONS))

    header, row = kubectl("get", "smig", "s1", "-o", "wide").stdout.splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "TARGET", "CURRENT", "AGE", "JOB",
                              "MESSAGE"]
    cells = row.split()
    del cells[5]  # the age
    assert cells == ["s1", "True", "Succeeded", "abc", "abc", "s1-2", "at", "abc"]


def test_custom_resources_take_no_strategic_merge_patch(emulator: Emulator,
                                                        kubectl: Any) -> None:
    """As on a real cluster (kubernetes/kubernetes#53558): `kubectl patch` of a custom resource
    needs `--type=merge` or `--type=json`; built-in kinds take its default strategic merge."""
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    refused = kubectl("patch", "smig", "s1", "-p", '{"spec":{"targetRevision":"abc"}}',
                      check=False)
    assert refused.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in refused.stderr
    assert "accepted media types include: application/json-patch+json, " \
        "application/merge-patch+json, application/apply-patch+yaml" in refused.stderr
    assert emulator.get(SCHEMA_MIGRATIONS, NS, "s1")["spec"]["targetRevision"] == "head"

    make_secret(emulator, "s", k="v")
    kubectl("patch", "secret", "s", "-p", '{"stringData":{"k":"w"}}')
    assert emulator.get(SECRETS, NS, "s")["data"]["k"] == "dw=="  # base64 of "w"


def test_kubectl_apply_watch_and_delete(emulator: Emulator, kubectl: Any) -> None:
    watcher = kubectl.popen("get", "smig", "--watch", "--output-watch-events")
    try:
        emulator.wait_for(lambda: emulator.watchers(SCHEMA_MIGRATIONS) > 0 or watcher.poll(),
                          timeout=10, message="kubectl get --watch watching")
        applied = kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(smig("s1")))
        assert "schemamigration.migrations.umt.dev/s1 created" in applied.stdout
        kubectl("delete", "smig", "s1")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert watcher.stdout is not None
            lines = [pool.submit(watcher.stdout.readline).result(timeout=10).split()
                     for _ in range(3)]
    finally:
        watcher.kill()
        watcher.communicate()
    assert lines[0][:3] == ["EVENT", "NAME", "READY"]  # server-side printing, while watching
    assert [line[:3] for line in lines[1:]] == [["ADDED", "s1", "head"], ["DELETED", "s1", "head"]]
    assert emulator.get(SCHEMA_MIGRATIONS, NS, "s1") is None


def test_kubernetes_client_reads_jobs_pods_and_custom_resources(
        emulator: Emulator, kubelet: FakeKubelet, k8s_api: Any) -> None:
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    emulator.create(JOBS, NS, python_job("ok", exit_with_report(0, REPORT)))
    wait_job(emulator, "ok", "Complete")

    async def read() -> tuple[Any, Any, Any]:
        batch = kubernetes.client.BatchV1Api(k8s_api)
        core = kubernetes.client.CoreV1Api(k8s_api)
        custom = kubernetes.client.CustomObjectsApi(k8s_api)
        return await asyncio.gather(
            asyncio.to_thread(batch.list_namespaced_job, NS),
            asyncio.to_thread(core.list_namespaced_pod, NS, label_selector="job-name=ok"),
            asyncio.to_thread(custom.get_namespaced_custom_object, "migrations.umt.dev",
                              "v1alpha1", NS, "schemamigrations", "s1"),
        )

    jobs, pods, resource = asyncio.run(read())

    (job,) = jobs.items
    assert job.status.succeeded == 1
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    (pod,) = pods.items
    state = pod.status.container_statuses[0].state.terminated
    assert state.exit_code == 0 and json.loads(state.message) == REPORT
    assert resource["spec"]["targetRevision"] == "head"


def test_helm_binary_is_helm_4(helm_binary: Any) -> None:
    import subprocess

    version = subprocess.run([str(helm_binary), "version", "--short"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("v4.")


# --- kopf --------------------------------------------------------------------------------------


def toy_registry(api: Any) -> kopf.OperatorRegistry:
    """SchemaMigration → Job; the Job's completion → Ready. Not the real operator."""
    registry = kopf.OperatorRegistry()

    @kopf.on.create("migrations.umt.dev", "v1alpha1", "schemamigrations", id="create_job",
                    registry=registry)
    def create_job(name: str, namespace: str, body: kopf.Body, **_: Any) -> dict[str, str]:
        job = python_job(f"{name}-1", exit_with_report(0, REPORT))
        job["metadata"]["labels"] = {"toy": "yes"}
        kopf.adopt(job, owner=body)
        kubernetes.client.BatchV1Api(api).create_namespaced_job(namespace, job)
        kopf.info(body, reason="JobCreated", message=f"created {name}-1")
        return {"jobName": f"{name}-1"}

    @kopf.on.field("batch", "v1", "jobs", field="status.conditions", labels={"toy": "yes"},
                   id="job_changed", registry=registry)
    def job_changed(new: Any, body: kopf.Body, namespace: str, **_: Any) -> None:
        if any(c["type"] == "Complete" and c["status"] == "True" for c in new or []):
            owner = body["metadata"]["ownerReferences"][0]["name"]
            kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                "migrations.umt.dev", "v1alpha1", namespace, "schemamigrations", owner,
                {"status": {"conditions": [{
                    "type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok",
                    "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}})

    return registry


def test_kopf_operator_reacts_through_run_kopf(
        emulator: Emulator, kubelet: FakeKubelet, k8s_api: Any, kopf_operator: Any) -> None:
    make_secret(emulator, url="sqlite://")
    with kopf_operator(toy_registry(k8s_api)) as operator:
        emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
        ready = emulator.wait_for_object(
            SCHEMA_MIGRATIONS, NS, "s1",
            lambda obj: condition(obj, "Ready"), timeout=10)
        events = emulator.wait_for(lambda: emulator.list(
            EVENTS, NS, fields="involvedObject.kind=SchemaMigration"))

    assert not operator.thread.is_alive() and operator.error is None
    # kopf stores the handler's result in status.create_job, which the CRD does not declare:
    # pruned, as on a cluster (kopf logs "Merge-patching finished with inconsistencies").
    assert "create_job" not in ready["status"]
    assert [job["metadata"]["name"] for job in emulator.list(JOBS, NS)] == ["s1-1"]
    assert kubelet.processes_started == 1
    assert events[0]["metadata"]["name"].startswith("kopf-event-")
    assert events[0]["reason"] == "JobCreated"


def test_kopf_sees_updates_and_deletes_through_finalizers(
        emulator: Emulator, kopf_operator: Any) -> None:
    registry = kopf.OperatorRegistry()
    calls: list[Any] = []
    resource = ("migrations.umt.dev", "v1alpha1", "schemamigrations")

    @kopf.on.create(*resource, id="create", registry=registry)
    def created(**_: Any) -> None:
        calls.append("create")

    @kopf.on.update(*resource, id="update", registry=registry)
    def updated(diff: Any, **_: Any) -> None:
        calls.append(("update", [tuple(change[1]) for change in diff]))

    @kopf.on.delete(*resource, id="delete", registry=registry)
    def deleted(**_: Any) -> None:
        calls.append("delete")

    with kopf_operator(registry):
        emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
        emulator.wait_for_object(SCHEMA_MIGRATIONS, NS, "s1",
                                 lambda obj: obj["metadata"].get("finalizers") and calls)
        emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "abc"}})
        emulator.wait_for(lambda: len(calls) == 2)
        emulator.delete(SCHEMA_MIGRATIONS, NS, "s1")
        emulator.wait_for(lambda: emulator.get(SCHEMA_MIGRATIONS, NS, "s1") is None)

    assert calls == ["create", ("update", [("spec", "targetRevision")]), "delete"]


def test_lists_come_in_pages_from_one_snapshot_like_the_apiserver(
        emulator: Emulator, k8s_api: Any) -> None:
    """`limit` / `continue` (API concepts, "Retrieving large results sets in chunks"): pages in
    etcd key order, from the first page's snapshot; an unknown token is 410 Expired."""
    for name in ("c", "a", "b"):
        emulator.create(SECRETS, "default", {"apiVersion": "v1", "kind": "Secret",
                                             "metadata": {"name": name}, "stringData": {"k": "v"}})
    core = kubernetes.client.CoreV1Api(k8s_api)
    first = core.list_namespaced_secret("default", limit=2)
    assert [s.metadata.name for s in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 1 and first.metadata._continue
    emulator.create(SECRETS, "default", {"apiVersion": "v1", "kind": "Secret",
                                         "metadata": {"name": "d"}, "stringData": {"k": "v"}})
    rest = core.list_namespaced_secret("default", limit=2, _continue=first.metadata._continue)
    assert [s.metadata.name for s in rest.items] == ["c"]  # the snapshot: no "d"
    assert rest.metadata.resource_version == first.metadata.resource_version
    assert not rest.metadata._continue
    with pytest.raises(kubernetes.client.ApiException) as expired:
        core.list_namespaced_secret("default", limit=2, _continue=first.metadata._continue)
    assert expired.value.status == 410


# --- Events: field selectors as the apiserver evaluates them ----------------------------------


def raw_request(cluster: Emulator, method: str, resource: str, name: str = "", *,
                query: dict[str, str] | None = None, body: Any = None,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    """One HTTP request as any client sends it; the status code and the JSON answer."""
    rtype = cluster.rtype(resource)
    group, version = rtype.resource.group, rtype.resource.version
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    url = f"{cluster.url}{path}/namespaces/{NS}/{rtype.resource.plural}"
    url += f"/{name}" if name else ""
    url += f"?{urllib.parse.urlencode(query)}" if query else ""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def event_about(obj: dict[str, Any], name: str, reason: str, message: str, *,
                kind: bool = True, component: str = "umt-operator") -> dict[str, Any]:
    meta = obj["metadata"]
    involved = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta["uid"]}
    if not kind:
        del involved["apiVersion"], involved["kind"]
    return {"metadata": {"name": name}, "involvedObject": involved, "reason": reason,
            "message": message, "type": "Warning", "source": {"component": component},
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
            "count": 1}


def test_events_are_selected_by_involved_object_and_reason(
        emulator: Emulator, k8s_api: Any) -> None:
    """pkg/registry/core/event/strategy.go `ToSelectableFields`: Events select on
    `involvedObject.*`, `reason`, `source`, `type`...; lists and watches alike."""
    s1 = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    s2 = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s2"))
    emulator.create(EVENTS, NS, event_about(s1, "e1", "JobRejected", "about s1"))
    emulator.create(EVENTS, NS, event_about(s2, "e2", "JobRejected", "about s2"))
    emulator.create(EVENTS, NS, event_about(s1, "e3", "Other", "also s1", component="x"))
    core = kubernetes.client.CoreV1Api(k8s_api)

    def names(selector: str) -> list[str]:
        return sorted(e.metadata.name for e in
                      core.list_namespaced_event(NS, field_selector=selector).items)

    uid = s1["metadata"]["uid"]
    assert names(f"involvedObject.uid={uid}") == ["e1", "e3"]
    assert names(f"involvedObject.uid={uid},reason=JobRejected") == ["e1"]
    assert names("involvedObject.kind=SchemaMigration,involvedObject.name!=s1") == ["e2"]
    assert names("source=x") == ["e3"]
    assert names("type==Warning,metadata.name=e2") == ["e2"]

    watch = kubernetes.watch.Watch()
    stream = watch.stream(core.list_namespaced_event, NS, timeout_seconds=5,
                          field_selector="involvedObject.name=s2")
    first = next(iter(stream))
    emulator.create(EVENTS, NS, event_about(s1, "e4", "JobRejected", "not seen"))
    emulator.create(EVENTS, NS, event_about(s2, "e5", "PodRejected", "seen"))
    second = next(iter(stream))
    watch.stop()
    assert [first["object"].metadata.name, second["object"].metadata.name] == ["e2", "e5"]


@pytest.mark.parametrize(("resource", "selector", "message"), [
    (EVENTS, "message=x", "field label not supported: message"),
    (EVENTS, "involvedObject.kind", "invalid selector: 'involvedObject.kind'; "
                                    "can't understand 'involvedObject.kind'"),
    (JOBS, "status.active=1", 'field label "status.active" not supported for batchv1.Job'),
    (SCHEMA_MIGRATIONS, "spec.targetRevision=head", '"spec.targetRevision" is not a known '
     'field selector: only "metadata.name", "metadata.namespace"'),
])
def test_an_unsupported_field_selector_is_a_bad_request(
        emulator: Emulator, resource: str, selector: str, message: str) -> None:
    """The apiserver converts each field label before reading anything and answers 400
    (handlers/get.go `ListResource`), for lists and watches."""
    for watch in ("false", "true"):
        code, status = raw_request(emulator, "GET", resource, query={
            "fieldSelector": selector, "watch": watch})
        assert (code, status["reason"]) == (400, "BadRequest")
        assert status["message"] == message


def test_kubectl_describe_shows_the_events_of_a_custom_resource(
        emulator: Emulator, kubectl: Any) -> None:
    """kubectl's describer lists Events by `involvedObject.name`, `.namespace`, `.kind` and
    `.uid` (kubectl/pkg/describe/describe.go `searchEvents`; client-go
    `events.GetFieldSelector`): an Event without the kind, or about a namesake with another
    uid, is not shown."""
    s1 = emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    emulator.create(EVENTS, NS, event_about(s1, "good", "JobRejected", "refused: bad image"))
    emulator.create(EVENTS, NS, event_about(s1, "kindless", "NoKind", "an event without kind",
                                            kind=False))
    old = {**s1, "metadata": {**s1["metadata"], "uid": "0000-old"}}
    emulator.create(EVENTS, NS, event_about(old, "stale", "OldOne", "about an earlier s1"))

    described = kubectl("describe", "smig", "s1").stdout

    events = described[described.index("Events:"):]
    assert "JobRejected" in events and "refused: bad image" in events
    assert "umt-operator" in events  # the From column: source.component
    assert "NoKind" not in events and "OldOne" not in events


# --- Refusals: validation, PodSecurity, ResourceQuota; the Job controller's FailedCreate -------

RESTRICTED_MESSAGE = (
    'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container '
    '"migrate" must set securityContext.allowPrivilegeEscalation=false), unrestricted '
    'capabilities (container "migrate" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "migrate" must set '
    'securityContext.runAsNonRoot=true), seccompProfile (pod or container "migrate" must set '
    'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
FAST_RETRY = {"create_backoff": 0.2}


def failed_creates(cluster: Emulator, job: str, count: int = 1,
                   namespace: str = NS) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        events = cluster.list(EVENTS, namespace, fields=f"involvedObject.kind=Job,"
                              f"involvedObject.name={job},reason=FailedCreate")
        return events if len(events) >= count else []

    return cluster.wait_for(found, message=f"{count} FailedCreate Events on {job}")


def test_a_pod_is_validated_as_the_apiserver_does(emulator: Emulator) -> None:
    """pkg/apis/core/validation `validateContainersOnlyForPod`: no whitespace around an
    image, on a pod (not on a pod template); 422 with the causes."""
    code, status = raw_request(emulator, "POST", PODS, body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "migrate", "image": "registry/umt:e2e "}]}})

    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == ('Pod "p" is invalid: spec.containers[0].image: Invalid value: '
                                 '"registry/umt:e2e ": must not have leading or trailing '
                                 "whitespace")
    assert status["details"] == {"name": "p", "kind": "Pod", "causes": [{
        "reason": "FieldValueInvalid", "field": "spec.containers[0].image",
        "message": 'Invalid value: "registry/umt:e2e ": must not have leading or trailing '
                   "whitespace"}]}
    assert emulator.get(PODS, NS, "p") is None


@pytest.mark.parametrize("job_controller_options", [FAST_RETRY])
def test_the_job_controller_reports_a_refused_pod_as_failed_create_events(
        emulator: Emulator, kubelet: FakeKubelet, kubectl: Any) -> None:
    """Seen on a real 1.36 cluster: the Job is accepted, its pods are refused; the only trace
    is `FailedCreate` Events, repeated with back-off; the status shows no active pod."""
    created = emulator.create(JOBS, NS, python_job("spaced", "pass", image="registry/umt:e2e "))

    first, second = failed_creates(emulator, "spaced", count=2)[:2]

    assert first["type"] == "Warning" and first["source"] == {"component": "job-controller"}
    assert first["involvedObject"] == {
        "kind": "Job", "namespace": NS, "name": "spaced", "uid": created["metadata"]["uid"],
        "apiVersion": "batch/v1", "resourceVersion": created["metadata"]["resourceVersion"]}
    for event in (first, second):
        assert re.fullmatch(
            r'Error creating: Pod "spaced-[a-z0-9]{5}" is invalid: spec\.containers\[0\]\.image: '
            r'Invalid value: "registry/umt:e2e ": must not have leading or trailing whitespace',
            event["message"]), event["message"]
    assert first["message"] != second["message"]  # a new generated name each attempt
    job = emulator.get(JOBS, NS, "spaced")
    assert job is not None and job["status"]["startTime"] and job["status"]["ready"] == 0
    assert "active" not in job["status"] and "conditions" not in job["status"]
    assert job_pods(emulator, "spaced") == [] and kubelet.processes_started == 0
    described = kubectl("describe", "job", "spaced").stdout  # what a user sees
    assert "Warning  FailedCreate" in described and "job-controller" in described
    assert "must not have leading or trailing whitespace" in described


@pytest.mark.parametrize("job_controller_options", [FAST_RETRY])
def test_pod_security_restricted_refuses_pods_of_clients_and_of_the_job_controller(
        emulator: Emulator, kubelet: FakeKubelet, kubectl: Any) -> None:
    """k8s.io/pod-security-admission: the namespace's `enforce` level, checked on every new
    pod; the Job itself is accepted."""
    emulator.create(NAMESPACES, None, {"metadata": {"name": "locked", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})

    refused = kubectl("run", "plain", "-n", "locked", "--image=registry/umt:1.0",
                      "--restart=Never", "--overrides",
                      json.dumps({"spec": {"containers": [{"name": "migrate",
                                                           "image": "registry/umt:1.0"}]}}),
                      check=False)
    assert refused.returncode != 0
    assert f'Error from server (Forbidden): pods "plain" is forbidden: {RESTRICTED_MESSAGE}' \
        in refused.stderr

    emulator.create(JOBS, "locked", python_job("unsafe", "pass"))
    (event,) = failed_creates(emulator, "unsafe", namespace="locked")[:1]
    assert re.fullmatch(r'Error creating: pods "unsafe-[a-z0-9]{5}" is forbidden: '
                        + re.escape(RESTRICTED_MESSAGE), event["message"]), event["message"]

    safe = python_job("safe", exit_with_report(0, REPORT))
    safe["spec"]["template"]["spec"]["securityContext"] = {
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    safe["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    emulator.create(JOBS, "locked", safe)
    emulator.wait_for_object(JOBS, "locked", "safe", lambda job: condition(job, "Complete"))


@pytest.mark.parametrize("job_controller_options", [FAST_RETRY])
def test_an_exceeded_quota_refuses_pods_until_it_is_raised(
        emulator: Emulator, kubelet: FakeKubelet) -> None:
    """plugin/pkg/admission/resourcequota: the quota's message; the Job controller retries
    and the Job runs once the quota allows its pod."""
    emulator.create(RESOURCE_QUOTAS, NS, {"metadata": {"name": "compute"},
                                          "spec": {"hard": {"pods": "0"}}})
    emulator.create(JOBS, NS, python_job("quota", exit_with_report(0, REPORT)))

    (event,) = failed_creates(emulator, "quota")[:1]
    assert re.fullmatch(r'Error creating: pods "quota-[a-z0-9]{5}" is forbidden: exceeded '
                        r"quota: compute, requested: pods=1, used: pods=0, limited: pods=0",
                        event["message"]), event["message"]

    emulator.patch(RESOURCE_QUOTAS, NS, "compute", {"spec": {"hard": {"pods": "1"}}})
    wait_job(emulator, "quota", "Complete", timeout=10)
    assert kubelet.processes_started == 1


def test_quota_on_compute_resources(emulator: Emulator) -> None:
    emulator.create(RESOURCE_QUOTAS, NS, {"metadata": {"name": "cpu"},
                                          "spec": {"hard": {"requests.cpu": "1",
                                                            "limits.memory": "1Gi"}}})
    pod = {"metadata": {"name": "p1"}, "spec": {"containers": [{
        "name": "c", "image": "x", "resources": {"limits": {"cpu": "600m", "memory": "512Mi"}}}]}}
    emulator.create(PODS, NS, pod)  # requests default to the limits
    with pytest.raises(ApiError) as exceeded:
        emulator.create(PODS, NS, {**pod, "metadata": {"name": "p2"}})
    assert exceeded.value.code == 403
    assert exceeded.value.message == (
        'pods "p2" is forbidden: exceeded quota: cpu, requested: requests.cpu=600m, '
        "used: requests.cpu=600m, limited: requests.cpu=1")
    with pytest.raises(ApiError) as unstated:
        emulator.create(PODS, NS, {"metadata": {"name": "p3"}, "spec": {"containers": [{
            "name": "c", "image": "x", "resources": {"requests": {"cpu": "1m"}}}]}})
    assert unstated.value.message == ('pods "p3" is forbidden: failed quota: cpu: must specify '
                                      "limits.memory")


def test_a_pod_with_only_limits_gets_its_qos_class(emulator: Emulator) -> None:
    """GetPodQOS (pkg/apis/core/helper/qos): limits without requests request the limits;
    equal cpu and memory limits make the pod Guaranteed (builtins.py read `limits` before
    assigning it here)."""
    created = emulator.create(PODS, NS, {"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
    assert created["status"]["qosClass"] == "Guaranteed"


BAD_SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric character "
                 "(e.g. 'example.com', regex used for validation is "
                 r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


@pytest.mark.parametrize(("change", "field", "message"), [
    (lambda job, pod, c: pod.update(serviceAccountName="Bad_Name"),
     "spec.template.spec.serviceAccountName", f'Invalid value: "Bad_Name": {BAD_SUBDOMAIN}'),
    (lambda job, pod, c: job["metadata"].update(labels={"bad key!": "v"}), "metadata.labels",
     """Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' \
or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  \
or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"""),
    (lambda job, pod, c: job["spec"]["template"].update(
        metadata={"annotations": {"umt.dev/a/b": "x"}}), "spec.template.metadata.annotations",
     """Invalid value: "umt.dev/a/b": a qualified name must consist of alphanumeric characters, \
'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?\
[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"""),
    (lambda job, pod, c: c.update(env=[{"name": "X", "valueFrom": {}}]),
     "spec.template.spec.containers[0].env[0].valueFrom",
     'Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, '
     "`configMapKeyRef` or `secretKeyRef`"),
    (lambda job, pod, c: c.update(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
     "spec.template.spec.containers[0].resources.requests",
     'Invalid value: "2": must be less than or equal to cpu limit of 1'),
    (lambda job, pod, c: pod.update(restartPolicy="Always"), "spec.template.spec.restartPolicy",
     'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
])
def test_a_job_is_validated_as_the_apiserver_does(
        emulator: Emulator, kubectl: Any, change: Any, field: str, message: str) -> None:
    """pkg/apis/batch/validation `ValidateJob`, core validation of metadata and the pod
    template: 422 Invalid, one cause per error; kubectl shows the message."""
    job = python_job("refused", "pass")
    pod = job["spec"]["template"]["spec"]
    change(job, pod, pod["containers"][0])

    code, status = raw_request(emulator, "POST", JOBS, body=job)

    assert (code, status["reason"], status["code"]) == (422, "Invalid", 422)
    assert status["message"] == f'Job.batch "refused" is invalid: {field}: {message}'
    assert status["details"] == {"name": "refused", "group": "batch", "kind": "Job", "causes": [
        {"reason": status["details"]["causes"][0]["reason"], "message": message,
         "field": field}]}
    applied = kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(job), check=False)
    assert applied.returncode != 0
    assert f'The Job "refused" is invalid: {field}: {message}' in applied.stderr
    assert emulator.get(JOBS, NS, "refused") is None


def test_several_errors_are_one_message_and_several_causes(emulator: Emulator) -> None:
    job = python_job("Two_Errors", "pass")
    job["spec"]["template"]["spec"]["serviceAccountName"] = "Bad_Name"
    code, status = raw_request(emulator, "POST", JOBS, body=job)
    assert code == 422
    assert status["message"] == (
        f'Job.batch "Two_Errors" is invalid: [metadata.name: Invalid value: "Two_Errors": '
        f"{BAD_SUBDOMAIN}, spec.template.spec.serviceAccountName: Invalid value: "
        f'"Bad_Name": {BAD_SUBDOMAIN}]')
    assert [c["field"] for c in status["details"]["causes"]] == [
        "metadata.name", "spec.template.spec.serviceAccountName"]


# --- Custom resources: the CRD's schema and CEL rules on every write --------------------------

SMIG_PATH = "SchemaMigration.migrations.umt.dev"
BACKOFF_RULE = "job.backoffLimit must be between 0 and 10"


def smig_with(name: str, **spec: Any) -> dict[str, Any]:
    body = smig(name)
    body["spec"].update(spec)
    return body


def test_custom_resource_writes_are_validated_by_the_crd_schema_and_cel_rules(
        emulator: Emulator, k8s_api: Any) -> None:
    """apiextensions-apiserver customresource strategy: OpenAPI keywords and CEL rules on
    create, patch, server-side apply and /status; 422, the rule's message verbatim."""
    code, status = raw_request(emulator, "POST", SCHEMA_MIGRATIONS,
                               body=smig_with("s1", job={"backoffLimit": 11}))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == (f'{SMIG_PATH} "s1" is invalid: spec.job.backoffLimit: '
                                 f'Invalid value: "integer": {BACKOFF_RULE}')
    assert status["details"] == {
        "name": "s1", "group": "migrations.umt.dev", "kind": "SchemaMigration", "causes": [{
            "reason": "FieldValueInvalid", "field": "spec.job.backoffLimit",
            "message": f'Invalid value: "integer": {BACKOFF_RULE}'}]}

    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    code, status = raw_request(emulator, "PATCH", SCHEMA_MIGRATIONS, "s1",
                               body={"spec": {"targetRevision": "head-1"}},
                               content_type="application/merge-patch+json")
    assert code == 422 and status["message"] == (
        f'{SMIG_PATH} "s1" is invalid: spec.targetRevision: Invalid value: "string": '
        "targetRevision must name a revision (head, heads, base, <branch>@head or a revision "
        "id); relative identifiers such as +1 or head-1 are not supported")

    code, status = raw_request(emulator, "PATCH", SCHEMA_MIGRATIONS, "s1", query={
        "fieldManager": "t"}, body=smig_with("s1", image="x" * 513),
        content_type="application/apply-patch+yaml")
    assert code == 422 and status["message"] == (
        f'{SMIG_PATH} "s1" is invalid: spec.image: Too long: may not be more than 512 bytes')

    code, status = raw_request(emulator, "PATCH", SCHEMA_MIGRATIONS, "s1/status",
                               body={"status": {"phase": "Bogus"}},
                               content_type="application/merge-patch+json")
    assert code == 422 and status["message"] == (
        f'{SMIG_PATH} "s1" is invalid: status.phase: Unsupported value: "Bogus": supported '
        'values: "Pending", "Running", "Succeeded", "Failed"')
    stored = emulator.get(SCHEMA_MIGRATIONS, NS, "s1")
    assert stored is not None and stored["metadata"]["resourceVersion"] == \
        emulator.history(SCHEMA_MIGRATIONS, NS, "s1")[0]["metadata"]["resourceVersion"]


def test_kubectl_shows_the_cel_message_verbatim(emulator: Emulator, kubectl: Any) -> None:
    """Checked on a real 1.36 apiserver: `kubectl apply` prints the rule's message."""
    applied = kubectl("apply", "--validate=false", "-f", "-", check=False,
                      input=json.dumps(smig_with("s1", job={"backoffLimit": 11})))
    assert applied.returncode != 0
    assert (f'The SchemaMigration "s1" is invalid: spec.job.backoffLimit: Invalid value: '
            f'"integer": {BACKOFF_RULE}') in applied.stderr
    assert emulator.get(SCHEMA_MIGRATIONS, NS, "s1") is None


def test_a_wrongly_typed_value_skips_the_cel_rules(emulator: Emulator) -> None:
    code, status = raw_request(emulator, "POST", SCHEMA_MIGRATIONS,
                               body=smig_with("s1", targetRevision=5))
    assert code == 422
    assert status["message"] == (
        f'{SMIG_PATH} "s1" is invalid: [spec.targetRevision: Invalid value: "integer": '
        'spec.targetRevision in body must be of type string: "integer", <nil>: Invalid value: '
        '"null": some validation rules were not checked because the object was invalid; correct '
        "the existing errors to complete validation]")


def test_unknown_fields_are_pruned_or_refused_when_strict(emulator: Emulator) -> None:
    """Structural pruning (apiextensions-apiserver schema/pruning); `fieldValidation=Strict`
    (kubectl's default) refuses them instead."""
    code, created = raw_request(emulator, "POST", SCHEMA_MIGRATIONS,
                                body=smig_with("s1", bogus=1))
    assert code == 201 and "bogus" not in created["spec"]
    code, status = raw_request(emulator, "PATCH", SCHEMA_MIGRATIONS, "s1/status",
                               body={"status": {"phase": "Pending", "extra": {"a": 1}}},
                               content_type="application/merge-patch+json")
    assert code == 200 and status["status"] == {"observedGeneration": -1, "phase": "Pending"}

    code, status = raw_request(emulator, "POST", SCHEMA_MIGRATIONS,
                               body=smig_with("s2", bogus=1, job={"nope": 2}),
                               query={"fieldValidation": "Strict"})
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'SchemaMigration in version "v1alpha1" cannot be handled as a SchemaMigration: strict '
        'decoding error: unknown field "spec.bogus", unknown field "spec.job.nope"')


def test_unchanged_invalid_values_ratchet(emulator: Emulator) -> None:
    """CRD validation ratcheting (GA in 1.33): after a CRD gets stricter, an update that
    leaves the now-invalid value alone is accepted; one that changes it is refused."""
    emulator.create(SCHEMA_MIGRATIONS, NS, smig_with("s1", image="registry/umt:1.0"))
    crd = emulator.get(CRDS, None, "schemamigrations.migrations.umt.dev")
    assert crd is not None
    image = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"]["image"]
    image["x-kubernetes-validations"] = [{"rule": "self.endsWith(':2.0')",
                                          "message": "only 2.0"}]
    emulator.register_crd(crd)

    accepted = emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"targetRevision": "base"}})
    assert accepted["spec"]["image"] == "registry/umt:1.0"
    with pytest.raises(ApiError, match=r'spec.image: Invalid value: "string": only 2.0'):
        emulator.patch(SCHEMA_MIGRATIONS, NS, "s1", {"spec": {"image": "registry/umt:1.1"}})


# --- Watch-list (sendInitialEvents) and the pinned kubectl -------------------------------------

WATCH_LIST = {"watch": "true", "sendInitialEvents": "true",
              "resourceVersionMatch": "NotOlderThan", "allowWatchBookmarks": "true"}


def test_watch_list_sends_the_state_then_a_bookmark(emulator: Emulator) -> None:
    """API concepts, "Streaming lists": ADDED for every object, a BOOKMARK annotated
    `k8s.io/initial-events-end: "true"` at the state's resourceVersion, then the changes."""
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s1"))
    emulator.create(SCHEMA_MIGRATIONS, NS, smig("s2"))
    query = urllib.parse.urlencode({**WATCH_LIST, "resourceVersion": "", "timeoutSeconds": "5"})
    url = f"{emulator.url}/apis/migrations.umt.dev/v1alpha1/namespaces/{NS}/schemamigrations"
    with urllib.request.urlopen(f"{url}?{query}", timeout=10) as stream:
        events = [json.loads(stream.readline()) for _ in range(3)]
        emulator.create(SCHEMA_MIGRATIONS, NS, smig("s3"))
        events.append(json.loads(stream.readline()))

    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "s1"), ("ADDED", "s2"), ("BOOKMARK", None), ("ADDED", "s3")]
    bookmark = events[2]["object"]
    assert bookmark["kind"] == "SchemaMigration"
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["metadata"]["resourceVersion"] == \
        events[1]["object"]["metadata"]["resourceVersion"]


@pytest.mark.parametrize(("query", "message"), [
    ({**WATCH_LIST, "resourceVersionMatch": ""}, "resourceVersionMatch: Forbidden: "
     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ({**WATCH_LIST, "resourceVersionMatch": "Exact"}, 'resourceVersionMatch: Unsupported '
     'value: "Exact": supported values: "NotOlderThan"'),
    ({**WATCH_LIST, "allowWatchBookmarks": "false"}, "allowWatchBookmarks: Forbidden: "
     "sendInitialEvents requires setting allowWatchBookmarks to true"),
    ({"watch": "true", "resourceVersionMatch": "NotOlderThan"}, "resourceVersionMatch: "
     "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
     "provided"),
    ({"sendInitialEvents": "true"}, "sendInitialEvents: Forbidden: sendInitialEvents is "
     "forbidden for list"),
])
def test_watch_list_options_are_validated(emulator: Emulator, query: dict[str, str],
                                          message: str) -> None:
    """meta/internalversion/validation `ValidateListOptions`: 422 on ListOptions."""
    code, status = raw_request(emulator, "GET", SCHEMA_MIGRATIONS,
                               query={k: v for k, v in query.items() if v})
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == f'ListOptions.meta.k8s.io "" is invalid: {message}'


def test_the_suite_runs_the_pinned_kubectl(kubectl_binary: Any) -> None:
    """`scripts/fetch-k8s-tools.sh`'s kubectl 1.35, never whatever is on PATH."""
    import subprocess

    version = json.loads(subprocess.run([str(kubectl_binary), "version", "--client",
                                         "-o", "json"], capture_output=True, text=True,
                                        check=True).stdout)
    assert version["clientVersion"]["minor"] == "35"
    assert kubectl_binary.parent.name == "bin" and kubectl_binary.parent.parent.name == ".tools"


def test_the_stand_ins_meet_only_through_the_api() -> None:
    """The Job controller and the kubelet import nothing of each other (no import cycle):
    like their real counterparts, each learns of the other's work from the API."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "k8s"

    def imports(name: str) -> set[str]:
        tree = ast.parse((folder / f"{name}.py").read_text())
        return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}

    assert "tests.k8s.job_controller" not in imports("kubelet")
    assert "tests.k8s.kubelet" not in imports("job_controller")
