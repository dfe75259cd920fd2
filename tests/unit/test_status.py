"""Status from a Job and its pods: every transition a user sees in ``kubectl get smig``.

The Job and Pod dicts below are shaped like what the API server returns (Kubernetes 1.31+:
``SuccessCriteriaMet`` / ``FailureTarget`` come before ``Complete`` / ``Failed``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from umt_operator import reasons
from umt_operator.jobs import pod_refusal, refusal_of
from umt_operator.status import (
    RunnerReport,
    compute_status,
    event_message_for_success,
    find_condition,
    invalid_spec_status,
    is_ready,
    make_condition,
    observe_job,
    parse_report,
    rfc3339,
    set_condition,
    waiting_status,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
EARLIER = "2025-03-01T11:00:00Z"
JOB = "umt-schema-3-k2x9"
IMAGE = "registry.example/umt:1.4.0"
OLD_IMAGE = "registry.example/umt:1.3.0"
STARTED = "2025-03-01T12:00:00Z"
FINISHED = "2025-03-01T12:00:20Z"


# --- realistic objects -------------------------------------------------------------------------


def job_condition(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": FINISHED,
        "lastTransitionTime": FINISHED,
    }


def job(*conditions: dict[str, Any], active: int = 0, failed: int = 0, succeeded: int = 0,
        completion: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": STARTED, "active": active, "ready": 0,
                              "failed": failed, "succeeded": succeeded, "terminating": 0,
                              "uncountedTerminatedPods": {}}
    if conditions:
        status["conditions"] = list(conditions)
    if completion:
        status["completionTime"] = completion
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": JOB, "namespace": "umt", "uid": "0b7c", "generation": 1},
        "spec": {"backoffLimit": 2, "completions": 1, "parallelism": 1},
        "status": status,
    }


REACHED = "Reached expected number of succeeded pods"
SUCCEEDED_JOB = job(
    job_condition("SuccessCriteriaMet", "CompletionsReached", REACHED),
    job_condition("Complete", "CompletionsReached", REACHED),
    succeeded=1,
    completion=FINISHED,
)


def failed_job(reason: str, message: str, failed: int = 1, final: bool = True) -> dict[str, Any]:
    conditions = [job_condition("FailureTarget", reason, message)]
    if final:
        conditions.append(job_condition("Failed", reason, message))
    return job(*conditions, failed=failed)


def pod(state: dict[str, Any], *, suffix: str = "x7p2q", phase: str | None = None,
        conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if phase is None:
        phase = {"running": "Running", "waiting": "Pending"}.get(next(iter(state)), "Failed")
        if "terminated" in state and state["terminated"]["exitCode"] == 0:
            phase = "Succeeded"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{JOB}-{suffix}",
            "namespace": "umt",
            "labels": {"batch.kubernetes.io/job-name": JOB, "job-name": JOB},
        },
        "status": {
            "phase": phase,
            "conditions": conditions or [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "migrate",
                    "image": IMAGE,
                    "imageID": "",
                    "ready": "running" in state,
                    "restartCount": 0,
                    "started": "running" in state,
                    "state": state,
                    "lastState": {},
                }
            ],
        },
    }


def terminated(exit_code: int, message: str | None, finished: str = FINISHED) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": STARTED,
        "finishedAt": finished,
    }
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


RUNNING = {"running": {"startedAt": STARTED}}


def report(**fields: Any) -> str:
    data: dict[str, Any] = {
        "ok": True,
        "direction": "upgrade",
        "fromRevision": "a1b2c3",
        "toRevision": "d4e5f6",
        "targetRevision": "d4e5f6",
        "applied": ["b0b0b0", "c1c1c1", "d4e5f6"],
        "durationSeconds": 1.234,
        "dryRun": False,
        "database": "postgresql://db:5432/umt",
    }
    data.update(fields)
    return json.dumps(data, separators=(",", ":"))


def failure_report(reason: str, message: str, **fields: Any) -> str:
    base = {"ok": False, "applied": [], "toRevision": "a1b2c3",
            "error": {"reason": reason, "message": message}}
    return report(**{**base, **fields})


def status_of(job_: dict[str, Any] | None, pods: Sequence[dict[str, Any]] = (), *,
              previous: dict[str, Any] | None = None, now: datetime = NOW,
              generation: int = 3) -> dict[str, Any]:
    return compute_status(
        generation=generation,
        previous_status=previous or {},
        job_name=JOB,
        job=job_,
        pods=list(pods),
        spec_target="head",
        image=IMAGE,
        now=now,
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def progressing(reason: str) -> dict[str, tuple[str, str]]:
    return {"Ready": ("False", reason), "Reconciling": ("True", reason),
            "Stalled": ("False", reason)}


def stalled(reason: str) -> dict[str, tuple[str, str]]:
    return {"Ready": ("False", reason), "Reconciling": ("False", reason),
            "Stalled": ("True", reason)}


READY = {"Ready": ("True", "Succeeded"), "Reconciling": ("False", "Succeeded"),
         "Stalled": ("False", "Succeeded")}

PREVIOUS_SUCCESS = {
    "observedGeneration": 2,
    "phase": "Succeeded",
    "currentRevision": "a1b2c3",
    "targetRevision": "a1b2c3",
    "direction": "upgrade",
    "appliedRevisions": ["a1b2c3"],
    "appliedImage": OLD_IMAGE,
    "jobName": "umt-schema-2-zz01",
    "startTime": EARLIER,
    "completionTime": EARLIER,
    "message": "migrated base→a1b2c3, 1 step, 0.4 s",
    "conditions": [
        {"type": t, "status": s, "observedGeneration": 2, "lastTransitionTime": EARLIER,
         "reason": "Succeeded", "message": "migrated base→a1b2c3, 1 step, 0.4 s"}
        for t, s in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"))
    ],
}


# --- progress ----------------------------------------------------------------------------------


def test_job_not_visible_yet() -> None:
    status = status_of(None)
    assert conditions(status) == progressing("JobCreated")
    assert status["phase"] == "Pending"
    assert status["jobName"] == JOB
    assert status["startTime"] == rfc3339(NOW)
    assert status["completionTime"] is None
    assert status["message"] == f"creating Job {JOB} to migrate to head"


def test_pod_being_created() -> None:
    status = status_of(job(active=1), [pod(waiting("ContainerCreating"))])
    assert conditions(status) == progressing("JobCreated")
    assert status["phase"] == "Pending"
    assert status["startTime"] == STARTED
    assert status["message"] == f"Job {JOB} created, waiting for its pod to start"


def unschedulable_since(moment: datetime) -> list[dict[str, Any]]:
    return [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient memory.",
             "lastProbeTime": None, "lastTransitionTime": rfc3339(moment)}]


def test_pod_not_scheduled_yet_is_still_progressing() -> None:
    pods = [pod({}, phase="Pending", conditions=unschedulable_since(NOW - timedelta(seconds=59)))]
    status = status_of(job(active=1), pods)
    assert conditions(status) == progressing("JobCreated")
    assert status["message"].endswith("waiting for a node for its pod: 0/3 nodes are available: "
                                      "3 Insufficient memory.")


def test_pod_unschedulable_past_the_threshold_stalls() -> None:
    pods = [pod({}, phase="Pending", conditions=unschedulable_since(NOW - timedelta(seconds=61)))]
    status = status_of(job(active=1), pods)
    assert conditions(status) == stalled("Unschedulable")
    assert status["phase"] == "Pending"
    assert status["message"] == (f"pod of Job {JOB} cannot be scheduled (for 61s): 0/3 nodes "
                                 "are available: 3 Insufficient memory.")


def test_unschedulable_for_measures_the_wait() -> None:
    from umt_operator.status import unschedulable_for

    pods = [pod({}, phase="Pending", conditions=unschedulable_since(NOW - timedelta(seconds=12)))]
    assert unschedulable_for(observe_job(job(active=1), pods), NOW) == 12
    assert unschedulable_for(observe_job(job(active=1), [pod(RUNNING)]), NOW) is None
    assert unschedulable_for(None, NOW) is None


def test_container_that_cannot_start_stalls_and_never_counts_as_a_run() -> None:
    message = ('failed to create containerd task: exec: "umt-migrations": executable file not '
               "found in $PATH: unknown")
    ended = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                            "startedAt": None, "finishedAt": FINISHED}}
    observation = observe_job(job(failed=1), [pod(ended)])
    assert observation.pod_problem is not None and not observation.container_ran
    status = status_of(job(active=1, failed=1), [pod(ended), pod(waiting("ContainerCreating"),
                                                                 suffix="b2")])
    assert conditions(status) == stalled("ContainerCannotStart")
    assert message in status["message"]
    failed = status_of(failed_job("BackoffLimitExceeded", "Job has reached the specified "
                                  "backoff limit", failed=3), [pod(ended)])
    assert conditions(failed) == stalled("ContainerCannotStart")


def test_a_runner_that_ran_counts_as_a_run() -> None:
    assert observe_job(job(active=1), [pod(RUNNING)]).container_ran
    assert not observe_job(job(active=1), [pod(waiting("ErrImagePull", "not found"))]).container_ran


def test_running() -> None:
    status = status_of(job(active=1), [pod(RUNNING)])
    assert conditions(status) == progressing("Migrating")
    assert status["phase"] == "Running"
    assert status["message"] == f"Job {JOB} is migrating the database to head"


def test_retry_after_a_transient_failure_says_why() -> None:
    first = pod(terminated(1, failure_report("DatabaseUnavailable", "cannot reach the database")),
                suffix="aaaaa")
    status = status_of(job(active=1, failed=1), [first, pod(RUNNING, suffix="bbbbb")])
    assert conditions(status) == progressing("Migrating")
    assert status["message"] == (
        f"Job {JOB} is migrating the database to head (attempt 2; the previous one failed: "
        "DatabaseUnavailable: cannot reach the database)"
    )


def test_progress_keeps_the_last_runs_results() -> None:
    status = status_of(job(active=1), [pod(RUNNING)], previous=PREVIOUS_SUCCESS)
    assert status["currentRevision"] == "a1b2c3"
    assert status["appliedImage"] == OLD_IMAGE
    assert status["appliedRevisions"] == ["a1b2c3"]
    assert status["completionTime"] is None  # cleared: this run has not finished
    assert status["startTime"] == STARTED


# --- success -----------------------------------------------------------------------------------


def test_success_with_report() -> None:
    status = status_of(SUCCEEDED_JOB, [pod(terminated(0, report()))], previous=PREVIOUS_SUCCESS)
    assert conditions(status) == READY
    assert status["phase"] == "Succeeded"
    assert status["currentRevision"] == "d4e5f6"
    assert status["targetRevision"] == "d4e5f6"
    assert status["direction"] == "upgrade"
    assert status["appliedRevisions"] == ["b0b0b0", "c1c1c1", "d4e5f6"]
    assert status["appliedImage"] == IMAGE
    assert status["completionTime"] == FINISHED
    assert status["message"] == "migrated a1b2c3→d4e5f6, 3 steps, 1.2 s"
    assert find_condition(status["conditions"], "Ready")["message"] == status["message"]


def test_success_criteria_met_is_enough() -> None:
    """Kubernetes 1.31+ sets SuccessCriteriaMet first; Complete follows once pods are gone."""
    early = job(job_condition("SuccessCriteriaMet", "CompletionsReached"), succeeded=1)
    status = status_of(early, [pod(terminated(0, report()))])
    assert conditions(status) == READY
    assert status["completionTime"] == FINISHED


def test_success_already_at_target() -> None:
    text = report(direction="none", fromRevision="d4e5f6", applied=[], durationSeconds=0.41)
    status = status_of(SUCCEEDED_JOB, [pod(terminated(0, text))])
    assert status["message"] == "already at d4e5f6, 0.4 s"
    assert status["direction"] == "none" and status["appliedRevisions"] == []


def test_success_downgrade() -> None:
    text = report(direction="downgrade", fromRevision="d4e5f6", toRevision="a1b2c3",
                  targetRevision="a1b2c3", applied=["d4e5f6"], durationSeconds=2)
    status = status_of(SUCCEEDED_JOB, [pod(terminated(0, text))])
    assert status["message"] == "downgraded d4e5f6→a1b2c3, 1 step, 2.0 s"
    assert status["currentRevision"] == "a1b2c3"


def test_success_from_an_empty_database_with_several_heads() -> None:
    text = report(fromRevision=None, toRevision=["h1", "h2"], targetRevision=["h1", "h2"],
                  applied=["h1", "h2"])
    status = status_of(SUCCEEDED_JOB, [pod(terminated(0, text))])
    assert status["message"] == "migrated base→h1,h2, 2 steps, 1.2 s"
    assert status["currentRevision"] == "h1,h2"


def test_success_uses_the_succeeded_pod_not_an_earlier_failure() -> None:
    first = pod(terminated(1, failure_report("DatabaseUnavailable", "down"),
                           finished="2025-03-01T12:00:05Z"), suffix="aaaaa")
    second = pod(terminated(0, report(), finished="2025-03-01T12:00:04Z"), suffix="bbbbb")
    status = status_of(SUCCEEDED_JOB, [first, second])
    assert status["currentRevision"] == "d4e5f6"
    assert conditions(status) == READY


def test_success_without_a_report() -> None:
    status = status_of(SUCCEEDED_JOB, [pod(terminated(0, None))], previous=PREVIOUS_SUCCESS)
    assert conditions(status) == READY
    assert status["currentRevision"] is None  # unknown: better empty than stale
    assert status["appliedImage"] == IMAGE
    assert status["message"] == (
        f"Job {JOB} succeeded but left no report; the database is at head"
    )


# --- failures ----------------------------------------------------------------------------------

POLICY_MESSAGE = (
    f"Container migrate for pod umt/{JOB}-x7p2q failed with exit code {{code}} matching FailJob "
    "rule at index 0"
)


@pytest.mark.parametrize(
    ("reason", "code", "job_reason"),
    [
        ("DowngradeNotAllowed", 2, "PodFailurePolicy"),
        ("RevisionNotFound", 2, "PodFailurePolicy"),
        ("MultipleHeads", 2, "PodFailurePolicy"),
        ("InvalidSpec", 2, "PodFailurePolicy"),
        ("MigrationFailed", 3, "PodFailurePolicy"),
        ("DatabaseUnavailable", 1, "BackoffLimitExceeded"),
        ("LockTimeout", 1, "BackoffLimitExceeded"),
    ],
)
def test_failure_reports_the_runners_reason(reason: str, code: int, job_reason: str) -> None:
    message = f"{reason} happened; remedy: do something"
    failed = failed_job(job_reason, POLICY_MESSAGE.format(code=code))
    status = status_of(failed, [pod(terminated(code, failure_report(reason, message)))],
                       previous=PREVIOUS_SUCCESS)
    assert conditions(status) == stalled(reason)
    assert status["phase"] == "Failed"
    assert status["message"].startswith(f"{reason}: {message}")
    assert status["completionTime"] == FINISHED
    assert reason in reasons.RUNNER_REASONS


def test_failure_while_pods_still_terminate() -> None:
    """FailureTarget alone (Kubernetes 1.31+) already means the Job has failed."""
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=2), final=False)
    text = failure_report("DowngradeNotAllowed", "a1b2c3 is an ancestor of d4e5f6")
    status = status_of(failed, [pod(terminated(2, text))])
    assert conditions(status) == stalled("DowngradeNotAllowed")


def test_refused_downgrade_keeps_revision_and_image() -> None:
    text = failure_report("DowngradeNotAllowed", "set allowDowngrade", fromRevision="a1b2c3",
                          toRevision="a1b2c3", targetRevision="000000")
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=2))
    status = status_of(failed, [pod(terminated(2, text))], previous=PREVIOUS_SUCCESS)
    assert status["currentRevision"] == "a1b2c3"
    assert status["targetRevision"] == "000000"
    assert status["appliedImage"] == OLD_IMAGE


def test_failed_migration_records_where_the_database_was_left() -> None:
    text = failure_report("MigrationFailed", "revision c1c1c1 failed: duplicate column",
                          fromRevision="a1b2c3", toRevision="b0b0b0", applied=["b0b0b0"])
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=3))
    status = status_of(failed, [pod(terminated(3, text))], previous=PREVIOUS_SUCCESS)
    assert status["currentRevision"] == "b0b0b0"
    assert status["appliedRevisions"] == ["b0b0b0"]
    assert status["appliedImage"] == IMAGE  # this image now holds the database's revision
    assert status["message"] == "MigrationFailed: revision c1c1c1 failed: duplicate column"


def test_unreachable_database_keeps_the_known_revision() -> None:
    text = failure_report("DatabaseUnavailable", "cannot reach postgresql://db:5432/umt",
                          fromRevision=None, toRevision=None, targetRevision=None)
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", 3)
    status = status_of(failed, [pod(terminated(1, text))], previous=PREVIOUS_SUCCESS)
    assert conditions(status) == stalled("DatabaseUnavailable")
    assert status["currentRevision"] == "a1b2c3"
    assert status["message"] == (
        "DatabaseUnavailable: cannot reach postgresql://db:5432/umt "
        f"(Job {JOB}: BackoffLimitExceeded)"
    )


def test_deadline_exceeded_without_report() -> None:
    failed = failed_job("DeadlineExceeded", "Job was active longer than specified deadline")
    status = status_of(failed, [pod(terminated(137, None))])
    assert conditions(status) == stalled("DeadlineExceeded")
    assert status["message"] == "DeadlineExceeded: Job was active longer than specified deadline"


def test_backoff_limit_with_a_log_tail_instead_of_a_report() -> None:
    """FallbackToLogsOnError: a runner that died before writing its report leaves its logs."""
    log = "Traceback (most recent call last):\n  File \"x.py\", line 1\nImportError: no module"
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", 3)
    status = status_of(failed, [pod(terminated(1, log))])
    assert conditions(status) == stalled("BackoffLimitExceeded")
    assert status["message"] == (
        f"BackoffLimitExceeded: Job {JOB} failed (exit code 1); log: Traceback (most recent call "
        "last): File \"x.py\", line 1 ImportError: no module"
    )
    assert "\n" not in status["message"]


def test_exit_3_without_report_is_a_failed_migration() -> None:
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=3))
    status = status_of(failed, [pod(terminated(3, "killed"))])
    assert conditions(status) == stalled("MigrationFailed")


def test_exit_2_without_report_is_an_unexplained_failure() -> None:
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=2))
    status = status_of(failed, [])
    assert conditions(status) == stalled("JobFailed")
    assert status["message"] == f"JobFailed: {POLICY_MESSAGE.format(code=2)}"


def test_malformed_runner_reason_falls_back_to_the_job_reason() -> None:
    text = failure_report("not a reason!", "odd")
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    status = status_of(failed, [pod(terminated(1, text))])
    assert conditions(status) == stalled("BackoffLimitExceeded")


def test_deadline_while_the_image_cannot_be_pulled() -> None:
    failed = failed_job("DeadlineExceeded", "Job was active longer than specified deadline", 0)
    stuck = pod(waiting("ImagePullBackOff", 'Back-off pulling image "registry.example/umt:9"'))
    status = status_of(failed, [stuck])
    assert conditions(status) == stalled("ImagePullFailed")
    assert 'Back-off pulling image "registry.example/umt:9"' in status["message"]
    assert "DeadlineExceeded" in status["message"]


def test_huge_message_is_cut_to_one_line() -> None:
    text = failure_report("MigrationFailed", "boom\n" * 2000)
    failed = failed_job("PodFailurePolicy", POLICY_MESSAGE.format(code=3))
    status = status_of(failed, [pod(terminated(3, text))])
    assert len(status["message"]) == 1024
    assert status["message"].endswith("…")
    assert "\n" not in status["message"]
    assert all(len(c["message"]) <= 1024 for c in status["conditions"])


def test_huge_message_keeps_the_job_reason() -> None:
    text = failure_report("DatabaseUnavailable", "refused " * 500)
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    status = status_of(failed, [pod(terminated(1, text))])
    assert len(status["message"]) <= 1024
    assert status["message"].endswith(f"… (Job {JOB}: BackoffLimitExceeded)")


def test_huge_log_tail_keeps_its_end() -> None:
    log = "noise " * 1000 + "FATAL: the actual cause"
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    status = status_of(failed, [pod(terminated(1, log))])
    assert status["message"].endswith("FATAL: the actual cause")
    assert len(status["message"]) <= 1024


@pytest.mark.parametrize(
    "secret_text",
    [
        "could not connect to postgresql://umt:s3cr3t-pw@db:5432/umt",
        "connection failed: host=db user=umt password=s3cr3t-pw dbname=umt",
    ],
)
def test_passwords_are_scrubbed(secret_text: str) -> None:
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    for text in (failure_report("DatabaseUnavailable", secret_text), secret_text):
        status = status_of(failed, [pod(terminated(1, text))])
        assert "s3cr3t-pw" not in json.dumps(status)
        assert "***" in status["message"]


# --- pod trouble while the Job runs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting_reason", "kubelet_message", "reason"),
    [
        ("CreateContainerConfigError", 'secret "umt-db" not found', "SecretNotFound"),
        ("CreateContainerConfigError", "couldn't find key url in Secret umt/umt-db",
         "SecretNotFound"),
        ("CreateContainerConfigError", 'configmap "settings" not found', "PodConfigError"),
        ("ErrImagePull", 'failed to pull image "registry.example/umt:9": not found',
         "ImagePullFailed"),
        ("ImagePullBackOff", 'Back-off pulling image "registry.example/umt:9"', "ImagePullFailed"),
        ("InvalidImageName", 'Failed to apply default image tag "UMT:latest"', "ImagePullFailed"),
        ("ErrImageNeverPull", 'Container image "registry.example/umt:9" is not present with '
         "pull policy of Never", "ImagePullFailed"),
        ("CreateContainerError", "failed to create containerd container: mount failed",
         "ContainerCannotStart"),
        ("RunContainerError", "failed to start container: working directory not found",
         "ContainerCannotStart"),
    ],
)
def test_pod_trouble_stalls_with_the_kubelets_message(
    waiting_reason: str, kubelet_message: str, reason: str
) -> None:
    status = status_of(job(active=1), [pod(waiting(waiting_reason, kubelet_message))])
    assert conditions(status) == stalled(reason)
    assert status["phase"] == "Pending"
    assert status["message"] == (
        f"pod of Job {JOB} cannot start: {kubelet_message} (Kubernetes keeps retrying until the "
        "Job's deadline; fix the cause, or change the spec)")
    assert status["completionTime"] is None


def test_pod_trouble_clears_once_the_pod_runs() -> None:
    stuck = status_of(job(active=1), [pod(waiting("CreateContainerConfigError",
                                                   'secret "umt-db" not found'))])
    later = NOW + timedelta(minutes=2)
    running = status_of(job(active=1), [pod(RUNNING)], previous=stuck, now=later)
    assert conditions(running) == progressing("Migrating")
    stalled_condition = find_condition(running["conditions"], "Stalled")
    assert stalled_condition["lastTransitionTime"] == rfc3339(later)


# --- conditions --------------------------------------------------------------------------------


def test_last_transition_time_kept_while_status_is_unchanged() -> None:
    first = status_of(job(active=1), [pod(waiting("ContainerCreating"))])
    later = NOW + timedelta(seconds=40)
    second = status_of(job(active=1), [pod(RUNNING)], previous=first, now=later)
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert find_condition(second["conditions"], type_)["lastTransitionTime"] == rfc3339(NOW)
    assert find_condition(second["conditions"], "Ready")["reason"] == "Migrating"
    done = NOW + timedelta(minutes=1)
    third = status_of(SUCCEEDED_JOB, [pod(terminated(0, report()))], previous=second, now=done)
    times = {c["type"]: c["lastTransitionTime"] for c in third["conditions"]}
    assert times == {"Ready": rfc3339(done), "Reconciling": rfc3339(done), "Stalled": rfc3339(NOW)}


def test_observed_generation_everywhere() -> None:
    cases = [
        status_of(None, generation=9),
        status_of(job(active=1), [pod(RUNNING)], generation=9, previous=PREVIOUS_SUCCESS),
        status_of(SUCCEEDED_JOB, [pod(terminated(0, report()))], generation=9),
        invalid_spec_status(9, PREVIOUS_SUCCESS, "bad", NOW),
    ]
    for status in cases:
        assert status["observedGeneration"] == 9
        assert [c["observedGeneration"] for c in status["conditions"]] == [9, 9, 9]
        assert all(c["lastTransitionTime"].endswith("Z") for c in status["conditions"])


def test_new_generation_starts_a_fresh_run() -> None:
    status = status_of(None, previous=PREVIOUS_SUCCESS, generation=3)
    assert status["startTime"] == rfc3339(NOW)
    assert status["completionTime"] is None
    assert status["currentRevision"] == "a1b2c3"
    assert status["appliedImage"] == OLD_IMAGE
    assert not is_ready(status, 3)
    assert is_ready(PREVIOUS_SUCCESS, 2) and not is_ready(PREVIOUS_SUCCESS, 3)


def test_other_conditions_are_kept() -> None:
    previous = {"conditions": [{"type": "Custom", "status": "True", "reason": "X", "message": "",
                                "lastTransitionTime": EARLIER}]}
    status = status_of(None, previous=previous)
    assert [c["type"] for c in status["conditions"]] == ["Custom", "Ready", "Reconciling",
                                                        "Stalled"]


def test_condition_helpers() -> None:
    ready = make_condition("Ready", True, "Succeeded", "ok", generation=4, now=NOW)
    assert ready == {"type": "Ready", "status": "True", "observedGeneration": 4,
                     "lastTransitionTime": "2025-03-01T12:00:30Z", "reason": "Succeeded",
                     "message": "ok"}
    later = make_condition("Ready", "True", "Succeeded", "again", generation=5,
                           now=NOW + timedelta(hours=1))
    (kept,) = set_condition([ready], later)
    assert kept["lastTransitionTime"] == ready["lastTransitionTime"]
    assert kept["message"] == "again" and kept["observedGeneration"] == 5
    flipped = make_condition("Ready", False, "Migrating", "", generation=5,
                             now=NOW + timedelta(hours=1))
    (changed,) = set_condition([ready], flipped)
    assert changed["lastTransitionTime"] == "2025-03-01T13:00:30Z"
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, 999)) == "2025-01-02T03:04:05Z"
    duplicated = [ready, {**ready, "status": "False"}]
    assert set_condition(duplicated, later) == [kept]


def test_invalid_spec_status() -> None:
    status = invalid_spec_status(4, PREVIOUS_SUCCESS, "targetRevision must name a revision", NOW)
    assert conditions(status) == stalled("InvalidSpec")
    assert status["phase"] == "Failed"
    assert status["message"] == "InvalidSpec: targetRevision must name a revision"
    assert "currentRevision" not in status and "appliedImage" not in status
    assert find_condition(status["conditions"], "Ready")["lastTransitionTime"] == rfc3339(NOW)
    assert find_condition(status["conditions"], "Stalled")["lastTransitionTime"] == rfc3339(NOW)


# --- reading reports and Jobs ------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "Traceback ...", "[1, 2]", '{"direction": "none"}'])
def test_non_reports_are_not_parsed(text: str | None) -> None:
    assert parse_report(text) is None


def test_report_parsing_tolerates_shrunk_reports() -> None:
    shrunk = '{"ok":false,"direction":"upgrade","fromRevision":"a","toRevision":"b",' \
             '"error":{"reason":"MigrationFailed","message":"…"}}'
    parsed = parse_report(shrunk)
    assert parsed == RunnerReport(ok=False, direction="upgrade", from_revision="a",
                                  to_revision="b", error_reason="MigrationFailed",
                                  error_message="…")


def test_observe_job_reads_the_last_attempt() -> None:
    first = pod(terminated(1, failure_report("LockTimeout", "waited 300 s"),
                           finished="2025-03-01T12:00:10Z"), suffix="aaaaa")
    second = pod(terminated(1, failure_report("DatabaseUnavailable", "down"),
                            finished="2025-03-01T12:00:19Z"), suffix="bbbbb")
    failed = failed_job("BackoffLimitExceeded", "Job has reached the specified backoff limit", 2)
    observation = observe_job(failed, [second, first])
    assert observation.failed and observation.finished and not observation.succeeded
    assert observation.failed_attempts == 2
    assert observation.report is not None
    assert observation.report.error_reason == "DatabaseUnavailable"
    assert observation.exit_code == 1
    assert observation.completion_time == FINISHED


def test_event_message_for_success() -> None:
    assert event_message_for_success(RunnerReport(ok=True, direction="upgrade", from_revision="a",
                                                  to_revision="b", applied=("b",))) == \
        "migrated a→b, 1 step"
    assert event_message_for_success(RunnerReport(ok=True, direction="none")) == "already at base"


def test_reasons_match_the_runner_vocabulary() -> None:
    """The operator and the runner speak the same words (DESIGN.md's list plus the runner's)."""
    from umt_migrations import errors

    runner = {value for name, value in vars(errors).items() if name.isupper() and
              isinstance(value, str)}
    assert runner <= reasons.RUNNER_REASONS
    design = ["JobCreated", "Migrating", "Succeeded", "DowngradeNotAllowed", "RevisionNotFound",
              "MultipleHeads", "MigrationFailed", "DatabaseUnavailable", "DeadlineExceeded",
              "BackoffLimitExceeded", "InvalidSpec", "SecretNotFound", "ImagePullFailed"]
    constants = {value for name, value in vars(reasons).items() if name.isupper() and
                 isinstance(value, str)}
    assert set(design) <= constants


def test_a_run_that_ended_before_the_jobs_verdict_never_steps_back_to_pending() -> None:
    """The pod ends a moment before the Job controller records it: still Running, not Pending."""
    done = {"terminated": {"exitCode": 0, "reason": "Completed", "message": report(),
                           "startedAt": STARTED, "finishedAt": FINISHED}}
    status = status_of(job(active=0), [pod(done)])
    assert conditions(status) == progressing("Migrating")
    assert status["phase"] == "Running"
    assert status["message"] == f"Job {JOB} has migrated the database to head; completing"
    lost = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": STARTED,
                           "finishedAt": FINISHED, "message": failure_report(
                               "DatabaseUnavailable", "could not connect to server")}}
    retrying = status_of(job(failed=1), [pod(lost)])
    assert retrying["phase"] == "Running" and conditions(retrying) == progressing("Migrating")
    assert "attempt 1 failed (DatabaseUnavailable: could not connect" in retrying["message"]


@pytest.mark.parametrize(("code", "expected"), [
    (2, "exit code 2 (an invalid request) is never retried: the Job fails"),
    (3, "exit code 3 (a migration failed) is never retried: the Job fails"),
    (1, "the Job retries it while its backoffLimit allows, then fails"),
])
def test_a_failed_attempt_says_what_follows(code: int, expected: str) -> None:
    """Issue 15 §4: "the Job retries or fails" was said of exit codes 2 and 3, which the
    Job's podFailurePolicy never retries."""
    lost = {"terminated": {"exitCode": code, "reason": "Error", "startedAt": STARTED,
                           "finishedAt": FINISHED, "message": failure_report(
                               "MigrationFailed", "revision x failed")}}
    status = status_of(job(active=0), [pod(lost)])
    assert status["message"].endswith(expected), status["message"]


# --- the cluster refuses the Job's pod (issue 13, finding 5) --------------------------------


def refusal_event(message: str, time: str = "2025-03-01T12:00:05Z", uid: str = "0b7c",
                  pod_name: str = "abcde") -> dict[str, Any]:
    """A FailedCreate Event of the Job controller, as the operator keeps it."""
    return refusal_of({"reason": "FailedCreate", "type": "Warning", "lastTimestamp": time,
                       "involvedObject": {"kind": "Job", "name": JOB, "uid": uid},
                       "message": f"Error creating: {message.format(pod=f'{JOB}-{pod_name}')}"})


INVALID = ('Pod "{pod}" is invalid: spec.containers[0].image: Invalid value: '
           '"registry.example/umt:1.4.0 ": must not have leading or trailing whitespace')
FORBIDDEN = ('pods "{pod}" is forbidden: violates PodSecurity "restricted:latest": '
             'allowPrivilegeEscalation != false (container "migrate" must set '
             'securityContext.allowPrivilegeEscalation=false)')
QUOTA = ('pods "{pod}" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, '
         'limited: pods=1')


def refused_status(*events: dict[str, Any], pods: Sequence[dict[str, Any]] = ()) -> dict:
    job_ = job(active=0)
    return compute_status(generation=3, previous_status={}, job_name=JOB, job=job_,
                          pods=list(pods), spec_target="head", image=IMAGE, now=NOW,
                          refusal=pod_refusal(job_, list(events)))


@pytest.mark.parametrize("message", [INVALID, FORBIDDEN])
def test_a_pod_the_cluster_refuses_is_stalled_with_the_servers_message(message: str) -> None:
    status = refused_status(refusal_event(message))
    assert conditions(status) == {"Ready": ("False", "PodRejected"),
                                  "Reconciling": ("False", "PodRejected"),
                                  "Stalled": ("True", "PodRejected")}
    assert status["phase"] == "Pending"
    assert message.format(pod=f"{JOB}-…") in status["message"]
    assert "Error creating" not in status["message"]


def test_each_retry_reads_the_same() -> None:
    """Every retry names a new pod: the status must not change (nor post an Event) for it."""
    first = refused_status(refusal_event(INVALID, pod_name="abcde"))
    again = refused_status(refusal_event(INVALID, pod_name="abcde"),
                           refusal_event(INVALID, "2025-03-01T12:00:09Z", pod_name="fghij"))
    assert first["message"] == again["message"]


def test_an_exceeded_quota_is_progress_with_the_message() -> None:
    status = refused_status(refusal_event(QUOTA))
    assert conditions(status) == progressing("QuotaExceeded")
    assert "exceeded quota: pods" in status["message"]


def test_a_refusal_older_than_the_newest_pod_is_over() -> None:
    """The quota cleared: the Job controller created a pod after the refusal."""
    started = pod(RUNNING)
    started["metadata"]["creationTimestamp"] = "2025-03-01T12:00:10Z"
    status = refused_status(refusal_event(QUOTA), pods=[started])
    assert conditions(status) == progressing("Migrating")


def test_a_refusal_of_another_job_of_that_name_is_not_this_ones() -> None:
    """A Job deleted and re-created under the same name: its Events carry the old uid."""
    assert conditions(refused_status(refusal_event(INVALID, uid="old-uid"))) == \
        progressing("JobCreated")


def test_a_generation_waiting_for_an_older_job_is_progress_that_names_it() -> None:
    """Generation 3 waits while the Job of generation 2 migrates: Reconciling, not Stalled;
    jobName is left to the running Job (the patch does not touch it)."""
    blocker = {"metadata": {"name": "app-schema-2-abcd",
                            "annotations": {"migrations.umt.dev/generation": "2"}}}
    previous = {"observedGeneration": 2, "jobName": "app-schema-2-abcd",
                "conditions": [make_condition("Ready", True, "Succeeded", "done",
                                              generation=1, now=NOW)]}
    status = waiting_status(previous, 3, blocker, NOW)
    assert conditions(status) == progressing(reasons.MIGRATING)
    assert status["message"] == ("waiting for Job app-schema-2-abcd (generation 2) to finish "
                                 "before running generation 3")
    assert {c["message"] for c in status["conditions"]} == {status["message"]}
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}
    assert (status["observedGeneration"], status["phase"]) == (3, "Pending")
    assert "jobName" not in status
