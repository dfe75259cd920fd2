"""What counts as a change that needs a Job (``umt_operator.rerun``), and ``status.lastSuccess``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.test_status import SUCCEEDED_JOB, failed_job, pod, report, status_of, terminated
from umt_operator import reasons
from umt_operator.jobs import ANNOTATION_GENERATION, ANNOTATION_INPUTS
from umt_operator.rerun import inputs_digest, skipped, unchanged_since, unchanged_status
from umt_operator.settings import Settings
from umt_operator.spec import parse_spec

pytestmark = pytest.mark.unit

UID = "6f1c2a4e-0000-4000-8000-000000000001"
BASE: dict[str, Any] = {"targetRevision": "head",
                        "database": {"urlSecretRef": {"name": "umt-db", "key": "url"}}}


def digest(spec: dict[str, Any] | None = None, *, settings: Settings | None = None,
           uid: str = UID, image: str = "registry.example/umt:1.4.0") -> str:
    return inputs_digest(parse_spec({**BASE, **(spec or {})}), settings or Settings(), uid, image)


#: Each of these can change what a run leaves in the database.
CHANGES = {
    "target": {"targetRevision": "3f2a9c1e7b42"},
    "allowDowngrade": {"allowDowngrade": True},
    "alembic config": {"alembic": {"config": "/srv/alembic.ini"}},
    "working dir": {"alembic": {"workingDir": "/srv"}},
    "secret name": {"database": {"urlSecretRef": {"name": "other-db", "key": "url"}}},
    "secret key": {"database": {"urlSecretRef": {"name": "umt-db", "key": "dsn"}}},
    "env": {"job": {"env": [{"name": "SCHEMA", "value": "eu"}]}},
    "service account": {"job": {"serviceAccountName": "db-iam"}},
    "rerun token": {"rerunToken": "restored-2025-03-01"},
}
#: These cannot.
SAME = {
    "pod annotation": {"job": {"podAnnotations": {"migrations.umt.dev/helm-revision": "7"}}},
    "pod labels": {"job": {"podLabels": {"team": "x"}}},
    "resources": {"job": {"resources": {"limits": {"memory": "1Gi"}}}},
    "backoff": {"job": {"backoffLimit": 5}},
    "safety": {"safety": {"lockRetries": 9}},
    "pull policy": {"imagePullPolicy": "Always"},
}


@pytest.mark.parametrize("spec", CHANGES.values(), ids=CHANGES.keys())
def test_an_input_that_can_change_the_result_changes_the_digest(spec: dict[str, Any]) -> None:
    assert digest(spec) != digest()


@pytest.mark.parametrize("spec", SAME.values(), ids=SAME.keys())
def test_what_cannot_change_the_result_keeps_the_digest(spec: dict[str, Any]) -> None:
    assert digest(spec) == digest()


def test_image_uid_and_operator_defaults_are_inputs() -> None:
    assert digest(image="registry.example/umt:1.5.0") != digest()
    assert digest(uid="another-instance") != digest()  # a re-created resource runs its own Job
    assert digest(settings=Settings(alembic_config="/srv/a.ini")) != digest()
    assert digest(settings=Settings(runner_command="/venv/bin/umt-migrations")) != digest()
    assert digest().startswith("sha256:") and len(digest()) == 71


def annotated(job: dict[str, Any], generation: str = "3") -> dict[str, Any]:
    meta = {**job["metadata"], "annotations": {ANNOTATION_INPUTS: digest(),
                                               ANNOTATION_GENERATION: generation}}
    return {**job, "metadata": meta}


def test_a_success_records_its_inputs_and_anything_else_removes_them() -> None:
    done = pod(terminated(0, report()))
    success = status_of(annotated(SUCCEEDED_JOB), [done])["lastSuccess"]
    assert success == {"generation": 3, "jobName": "umt-schema-3-k2x9", "inputs": digest()}
    failed = failed_job("PodFailurePolicy", "exit code 3", failed=1)
    assert status_of(annotated(failed), [pod(terminated(3, None))])["lastSuccess"] is None
    assert status_of(None)["lastSuccess"] is None  # a Job being created may move the database
    assert status_of(SUCCEEDED_JOB, [done])["lastSuccess"] is None  # no inputs recorded


def test_unchanged_status_is_ready_for_the_new_generation_without_a_job() -> None:
    previous = {"currentRevision": "d4e5f6", "lastSuccess": {
        "generation": 3, "jobName": "umt-schema-3-k2x9", "inputs": digest()}}
    success = unchanged_since(previous, digest())
    assert success is not None
    assert unchanged_since(previous, digest({"rerunToken": "x"})) is None
    status = unchanged_status(previous, 4, success, datetime(2025, 3, 1, tzinfo=UTC))
    flags = {c["type"]: (c["status"], c["reason"], c["observedGeneration"])
             for c in status["conditions"]}
    assert flags == {"Ready": ("True", reasons.INPUTS_UNCHANGED, 4),
                     "Reconciling": ("False", reasons.INPUTS_UNCHANGED, 4),
                     "Stalled": ("False", reasons.INPUTS_UNCHANGED, 4)}
    assert status["jobName"] is None and status["phase"] == "Succeeded"
    assert "generation 3 migrated the database to d4e5f6 (Job umt-schema-3-k2x9)" \
        in status["message"]
    assert skipped(status, 4) and not skipped(status, 5)
