"""Pod-level trouble, as a real cluster shows it: the pod waits and the Job does not change.

The fake Job controller writes the Job's status only when a real one would (its counts or
conditions change), and the fake kubelet takes its time before the pod's first status; so
the operator learns of a waiting pod only from the pod itself (its pod watch). Each scenario
checks the reason, the kubelet's (or scheduler's) message, and that it shows within seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.k8s.emulator import JOBS, SCHEMA_MIGRATIONS, SECRETS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    NEW_IMAGE,
    NS,
    Operator,
    add_migration,
    add_secret,
    condition,
    db_revision,
    event_reasons,
    jobs_of,
    two_releases,
    wait_condition,
    wait_message,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kubelet runs two "images" (two releases of this repository)."""
    return two_releases(tmp_path_factory)

#: "Within seconds": the operator reports a waiting pod this fast after the pod says so.
PROMPT = 5.0


@pytest.fixture
def settings() -> Any:
    from umt_operator.settings import Settings

    return Settings.from_env({
        "UMT_OPERATOR_DEFAULT_IMAGE": NEW_IMAGE,
        "UMT_OPERATOR_LOCK_TIMEOUT_SECONDS": "60",
        "UMT_OPERATOR_METRICS_PORT": "0",
        "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "1",
        "UMT_OPERATOR_UNSCHEDULABLE_SECONDS": "2",
    })


def stalled_promptly(emulator: Emulator, reason: str, name: str = "umt-schema",
                     generation: int | None = None) -> dict:
    started = time.monotonic()
    obj = wait_condition(emulator, name, "Stalled", reason, generation=generation, timeout=20)
    assert time.monotonic() - started < PROMPT + 15  # generous bound for a loaded machine
    return obj


def job_status_writes(emulator: Emulator, job_name: str) -> list[dict]:
    return [h.get("status") or {} for h in emulator.history(JOBS, NS, job_name)]


def test_missing_secret_key_is_reported_with_the_kubelets_message(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    emulator.create(SECRETS, NS, {"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": "umt-db"}, "stringData": {"dsn": pg_url}})
    add_migration(emulator)
    obj = stalled_promptly(emulator, "SecretNotFound")
    assert "couldn't find key url in Secret default/umt-db" in obj["status"]["message"]
    assert obj["status"]["phase"] == "Pending"
    assert condition(obj, "Ready")["status"] == "False"
    job_name = obj["status"]["jobName"]
    # the pod's trouble never reached the Job: its status was written once, at the start
    assert [w.get("active") for w in job_status_writes(emulator, job_name) if w] == [1]
    assert kubelet.processes_started == 0
    emulator.wait_for(lambda: "SecretNotFound" in event_reasons(emulator, "umt-schema"))


@pytest.mark.parametrize("kubelet_options", [{"node_images": ()}])
def test_image_never_pulled_is_reported(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, imagePullPolicy="Never")
    obj = stalled_promptly(emulator, "ImagePullFailed")
    assert "is not present with pull policy of Never" in obj["status"]["message"]
    assert kubelet.processes_started == 0


def test_unschedulable_pod_waits_then_stalls_past_the_threshold(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, job={"nodeSelector": {"disktype": "ssd"}})
    waiting = wait_message(emulator, "umt-schema", "waiting for a node", timeout=20)
    assert condition(waiting, "Reconciling")["status"] == "True"
    assert condition(waiting, "Stalled")["status"] == "False"
    # no event of any kind comes after this: the operator looks again at the threshold
    obj = stalled_promptly(emulator, "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in obj["status"]["message"]
    assert "cannot be scheduled (for " in obj["status"]["message"]
    assert kubelet.processes_started == 0


@pytest.mark.parametrize("kubelet_options", [{"command_map": {}}])
def test_container_that_cannot_start_is_reported(
        emulator: Emulator, kopf_operator: Any, registry: Any, kubelet: FakeKubelet,
        pg_url: str) -> None:
    from umt_operator.settings import Settings

    settings = Settings.from_env({"UMT_OPERATOR_DEFAULT_IMAGE": NEW_IMAGE,
                                  "UMT_OPERATOR_METRICS_PORT": "0",
                                  "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "1",
                                  "UMT_OPERATOR_RUNNER_COMMAND": "umt-migrations-typo"})
    op = Operator(emulator, kopf_operator, registry, settings)
    op.start()
    try:
        add_secret(emulator, pg_url)
        add_migration(emulator)
        obj = stalled_promptly(emulator, "ContainerCannotStart")
        assert 'exec: "umt-migrations-typo": executable file not found' in obj["status"]["message"]
        # the Job retries (backoffLimit 1), then fails: the reason stays the pod's own
        obj = wait_condition(emulator, "umt-schema", "Stalled", "ContainerCannotStart", timeout=30)
        emulator.wait_for(lambda: (emulator.get(SCHEMA_MIGRATIONS, NS, "umt-schema")["status"]
                                   .get("phase")) == "Failed", timeout=30)
        assert kubelet.processes_started == 0
    finally:
        op.stop()


def test_spec_change_replaces_a_job_whose_pod_never_started(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_migration(emulator)  # no Secret yet: the pod waits for good
    first = stalled_promptly(emulator, "SecretNotFound")["status"]["jobName"]
    emulator.create(SECRETS, NS, {"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": "umt-db-2"}, "stringData": {"url": pg_url}})
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema",
                   {"spec": {"database": {"urlSecretRef": {"name": "umt-db-2", "key": "url"}}}})
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=2)
    assert obj["status"]["currentRevision"] == HEAD == db_revision(pg_url)
    assert emulator.get(JOBS, NS, first) is None  # deleted, not waited on for 30 minutes
    assert [j["metadata"]["name"] for j in jobs_of(emulator, "umt-schema")] == \
        [obj["status"]["jobName"]]
    assert "JobReplaced" in event_reasons(emulator, "umt-schema")
    assert kubelet.processes_started == 1


def test_logs_are_for_people(emulator: Emulator, operator: Operator, kubelet: FakeKubelet,
                             pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """One upgrade and three no-op runs (each forced by a new rerunToken), then a generation
    that needs no Job: a line per meaningful step, no kopf chatter."""
    caplog.set_level(logging.INFO)
    add_secret(emulator, pg_url)
    add_migration(emulator)
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    for generation in (2, 3, 4):
        emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema",
                       {"spec": {"rerunToken": str(generation)}})
        wait_condition(emulator, "umt-schema", "Ready", "Succeeded", generation=generation)
    emulator.wait_for(lambda: event_reasons(emulator, "umt-schema").count("Succeeded") == 4)
    emulator.patch(SCHEMA_MIGRATIONS, NS, "umt-schema", {"spec": {"job": {"podLabels": {
        "try": "5"}}}})  # nothing the migration depends on: no Job
    wait_condition(emulator, "umt-schema", "Ready", "InputsUnchanged", generation=5)
    emulator.wait_for(lambda: "InputsUnchanged" in event_reasons(emulator, "umt-schema"))
    lines = [r.getMessage() for r in caplog.records
             if r.levelno >= logging.INFO and r.name.startswith(("kopf", "umt"))]
    assert not [line for line in lines if line.startswith("Handler ")], lines
    assert sum("created Job" in line for line in lines) == 4, lines
    assert sum(line.startswith("migrated ") for line in lines) == 1, lines
    assert sum(line.startswith("already at ") for line in lines) == 3, lines
    assert sum(line.startswith("no Job run: ") for line in lines) == 1, lines
    assert len(lines) == 9, lines  # and nothing else: the README says "9 lines"


def test_kopf_handler_lines_still_show_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    from umt_operator.logs import DemoteRoutine

    record = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1,
                               "Handler 'job_event' succeeded.", None, None)
    logger = logging.getLogger("kopf.objects")
    previous = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert DemoteRoutine().filter(record) is False
        record.levelno = logging.INFO
        logger.setLevel(logging.DEBUG)
        assert DemoteRoutine().filter(record) is True and record.levelno == logging.DEBUG
    finally:
        logger.setLevel(previous)
    mine = logging.LogRecord("kopf.objects", logging.INFO, __file__, 1,
                             "created Job x to migrate to head", None, None)
    assert DemoteRoutine().filter(mine) is True and mine.levelno == logging.INFO

