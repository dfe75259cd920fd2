"""The migration Job: deterministic names, the rendered manifest (golden files), safety settings.

Rewrite the golden files after an intended change with ``UMT_UPDATE_GOLDEN=1`` and review the
diff before committing it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from umt_operator.jobs import (
    CONTAINER_NAME,
    JobOwner,
    controlled_by,
    job_labels,
    job_name,
    label_value,
    owned_by,
    render_job,
    resource_selector,
    runner_args,
)
from umt_operator.settings import Settings
from umt_operator.spec import parse_spec

pytestmark = pytest.mark.unit

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
UID = "6f1c2a4e-0000-4000-8000-000000000001"
OTHER_UID = "6f1c2a4e-0000-4000-8000-000000000002"
LONG_NAME = "umt-marketing-platform-primary-database-schema-migration-for-the-eu-west-region"

MINIMAL = {"targetRevision": "head", "database": {"urlSecretRef": {"name": "umt-db"}}}
ALL_KNOBS = {
    "targetRevision": "3f2a9c1e7b42",
    "allowDowngrade": False,
    "database": {"urlSecretRef": {"name": "umt-db", "key": "dsn"}},
    "image": "registry.example/umt:1.4.0",
    "imagePullPolicy": "Always",
    "alembic": {"config": "/srv/app/alembic.ini", "workingDir": "/srv/app"},
    "job": {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 3600,
        "serviceAccountName": "umt-migrator",
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux", "pool": "batch"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}
        ],
        "podLabels": {"team": "marketing", "app.kubernetes.io/name": "hijacked"},
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "SENTRY_DSN", "valueFrom": {"secretKeyRef": {"name": "sentry", "key": "dsn"}}},
        ],
    },
}
DOWNGRADE = {**MINIMAL, "targetRevision": "a1b2c3d4e5f6", "allowDowngrade": True}
#: Every spec.safety field away from the runner's defaults: each becomes its option.
SAFETY = {**MINIMAL, "safety": {"stepLockTimeoutMilliseconds": 750,
                                "statementTimeoutMilliseconds": 90000, "lockRetries": 9,
                                "connectTimeoutSeconds": 3}}

CASES: dict[str, dict[str, Any]] = {
    "minimal": {"name": "umt-schema", "generation": 1, "spec": MINIMAL},
    "all-knobs": {"name": "umt-schema", "generation": 7, "spec": ALL_KNOBS},
    "downgrade-allowed": {"name": "umt-schema", "generation": 12, "spec": DOWNGRADE},
    "long-name": {"name": LONG_NAME, "generation": 123456, "spec": MINIMAL},
    "safety": {"name": "umt-schema", "generation": 3, "spec": SAFETY},
}


def render(case: dict[str, Any], settings: Settings | None = None, **overrides: Any) -> dict:
    spec = parse_spec(case["spec"])
    settings = settings or Settings()
    return render_job(
        name=case["name"],
        namespace="umt",
        uid=UID,
        generation=case["generation"],
        spec=spec,
        settings=settings,
        image=overrides.get("image", spec.image or settings.default_image),
    )


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(job)["containers"]
    return only


# --- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_job_matches_golden_file(case: str) -> None:
    rendered = render(CASES[case])
    golden = GOLDEN_DIR / f"{case}.yaml"
    if os.environ.get("UMT_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(yaml.safe_dump(rendered, sort_keys=False, allow_unicode=True))
    assert golden.exists(), f"{golden} is missing; run with UMT_UPDATE_GOLDEN=1 to create it"
    assert yaml.safe_load(golden.read_text()) == rendered


def test_every_golden_file_has_a_case() -> None:
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.yaml")) == sorted(CASES)


# --- names and labels --------------------------------------------------------------------------


def test_job_name_is_deterministic_and_per_generation() -> None:
    assert job_name("umt-schema", 7, UID) == job_name("umt-schema", 7, UID)
    assert re.fullmatch(r"umt-schema-7-[0-9a-z]{13}", job_name("umt-schema", 7, UID))
    names = {job_name("umt-schema", generation, UID) for generation in range(1, 200)}
    assert len(names) == 199


def test_job_name_is_stable_across_processes() -> None:
    """Frozen value: the hash must not depend on PYTHONHASHSEED or the Python version."""
    assert job_name("umt-schema", 1, UID) == "umt-schema-1-vq6y6dfussud0"
    assert job_name("umt-schema", 1, UID) == render(CASES["minimal"])["metadata"]["name"]
    assert job_name("umt-schema", 1, UID) == yaml.safe_load(
        (GOLDEN_DIR / "minimal.yaml").read_text()
    )["metadata"]["name"]


@pytest.mark.parametrize(
    "name", ["umt-schema", "a", LONG_NAME, "x" * 253, "db.umt.example", "a" + "-b" * 100]
)
@pytest.mark.parametrize("generation", [1, 10**9, 2**63 - 1])
@pytest.mark.parametrize("fallback", [False, True])
def test_job_name_is_a_dns_label_with_generation_and_uid_hash(
        name: str, generation: int, fallback: bool) -> None:
    result = job_name(name, generation, UID, fallback=fallback)
    assert len(result) <= 63
    assert DNS_LABEL.match(result), result
    assert f"-{generation}-{job_name('x', 1, UID)[-13:]}" in result  # never cut


def test_a_resource_instance_owns_its_job_names() -> None:
    """Finding 2 (issue 13): a resource deleted and re-created under the same name (a new uid)
    gets Job names of its own, so it can never adopt the old instance's Job."""
    assert job_name("umt-schema", 1, UID) != job_name("umt-schema", 1, OTHER_UID)
    assert job_name("umt-schema", 1, UID, fallback=True) != \
        job_name("umt-schema", 1, OTHER_UID, fallback=True)


#: Two 59-character names whose Jobs had the same name under the former scheme (name cut to
#: 56 characters + generation + a 4-character hash of name and generation): found by trying
#: `…-production-eu-<n>` until two collided (issue 13, finding 3).
COLLIDING = ("umt-marketing-platform-primary-database-production-eu-16518",
             "umt-marketing-platform-primary-database-production-eu-16947")


def _former_job_name(name: str, generation: int) -> str:
    import hashlib

    number = int.from_bytes(hashlib.sha256(f"{name}/{generation}".encode()).digest()[:8], "big")
    digits = ""
    while len(digits) < 4:
        number, digit = divmod(number, 36)
        digits += "0123456789abcdefghijklmnopqrstuvwxyz"[digit]
    suffix = f"-{generation}-{digits}"
    return name[: 63 - len(suffix)].rstrip("-") + suffix


def test_names_that_collided_under_the_former_scheme_get_distinct_jobs() -> None:
    """Finding 3 (issue 13): two resources, one Job name. Every uid differs, so do the Jobs."""
    first, second = COLLIDING
    assert _former_job_name(first, 1) == _former_job_name(second, 1)  # the collision was real
    assert job_name(first, 1, UID) != job_name(second, 1, OTHER_UID)
    assert job_name(first, 1, UID, fallback=True) != job_name(second, 1, OTHER_UID, fallback=True)


def test_fallback_names_of_long_names_keep_the_hash() -> None:
    """Finding 3 (issue 13): the downgrade rerun (`…-prev`) of two long names used to be
    `job_name[:58] + "-prev"`, the same for both; now it keeps generation and uid hash."""
    first, second = LONG_NAME + "-one", LONG_NAME + "-two"
    a, b = job_name(first, 1, UID, fallback=True), job_name(second, 1, OTHER_UID, fallback=True)
    assert a != b and a.endswith("-prev") and b.endswith("-prev")
    assert a[:-5].endswith(job_name(first, 1, UID)[-16:])  # "-1-<hash>" survives in the rerun
    assert job_name(first, 1, UID, fallback=True) != job_name(first, 1, UID)


def test_ownership_is_namespace_and_uid_never_the_name() -> None:
    """Findings 1 and 2 (issue 13): a Job is a resource's only in its namespace with its uid."""
    job = render(CASES["minimal"])
    assert owned_by(job, "umt", UID)
    assert not owned_by(job, "evil", UID)  # same annotations, another namespace
    assert not owned_by(job, "umt", OTHER_UID)  # an earlier instance of the same name
    assert not owned_by(job, "umt", "")
    forged = {**job, "metadata": {**job["metadata"], "annotations": {}}}
    assert not owned_by(forged, "umt", UID)
    owner = JobOwner(namespace="umt", name="umt-schema", uid=UID, generation=1)
    assert owner.owns(job) and owner.job_name == job["metadata"]["name"]


def test_only_pods_the_job_controller_created_for_the_job_count() -> None:
    job = {"metadata": {"name": "j", "uid": "job-uid"}}
    mine = {"metadata": {"ownerReferences": [{"uid": "job-uid", "controller": True}]}}
    assert controlled_by(mine, job)
    assert not controlled_by({"metadata": {"ownerReferences": [{"uid": "job-uid"}]}}, job)
    assert not controlled_by({"metadata": {"labels": {"job-name": "j"}}}, job)
    assert not controlled_by(mine, {"metadata": {"name": "j"}})


def test_labels_follow_kubernetes_conventions() -> None:
    assert job_labels("umt-schema", 3) == {
        "app.kubernetes.io/name": "umt-migrations",
        "app.kubernetes.io/component": "schema-migration",
        "app.kubernetes.io/managed-by": "umt-schema-operator",
        "app.kubernetes.io/instance": "umt-schema",
        "migrations.umt.dev/schemamigration": "umt-schema",
        "migrations.umt.dev/generation": "3",
    }
    assert resource_selector("umt-schema") == "migrations.umt.dev/schemamigration=umt-schema"


def test_long_resource_names_become_valid_label_values() -> None:
    name = "x" * 200
    value = label_value(name)
    assert len(value) <= 63 and LABEL_VALUE.match(value)
    assert value != label_value("x" * 199)
    assert resource_selector(name).endswith("=" + value)
    assert job_labels(name, 1)["app.kubernetes.io/instance"] == value
    assert label_value("short.name") == "short.name"


# --- the manifest ------------------------------------------------------------------------------


def test_no_owner_references() -> None:
    """Deleting the SchemaMigration must not garbage-collect (and kill) a running migration."""
    job = render(CASES["all-knobs"])
    assert "ownerReferences" not in job["metadata"]
    annotations = job["metadata"]["annotations"]
    assert annotations["migrations.umt.dev/owner"] == "umt/umt-schema"
    assert annotations["migrations.umt.dev/owner-uid"] == "6f1c2a4e-0000-4000-8000-000000000001"
    assert annotations["migrations.umt.dev/target-revision"] == "3f2a9c1e7b42"
    assert annotations["migrations.umt.dev/generation"] == "7"


def test_database_url_comes_from_the_secret() -> None:
    env = container(render(CASES["all-knobs"]))["env"]
    assert env[0] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "umt-db", "key": "dsn"}},
    }
    assert {"name": "TERMINATION_MESSAGE_PATH", "value": "/dev/termination-log"} in env
    assert [e["name"] for e in env] == [
        "DATABASE_URL",
        "TERMINATION_MESSAGE_PATH",
        "LOG_LEVEL",
        "SENTRY_DSN",
    ]


def test_runner_command_and_arguments() -> None:
    settings = Settings(runner_command="/venv/bin/umt-migrations", lock_timeout_seconds=42)
    job = render(CASES["minimal"], settings)
    assert container(job)["command"] == ["/venv/bin/umt-migrations"]
    assert container(job)["args"] == [
        "migrate", "--to", "head", "--config", "/app/alembic.ini", "--lock-timeout", "42"
    ]
    downgrade = parse_spec(DOWNGRADE)
    assert runner_args(downgrade, settings)[-1] == "--allow-downgrade"
    assert "--allow-downgrade" not in container(render(CASES["all-knobs"]))["args"]


def test_failure_policy_and_restart_policy() -> None:
    job = render(CASES["minimal"])
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In", "values": [2, 3]},
    }
    assert rules[1]["action"] == "Ignore"
    assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    assert pod_spec(job)["restartPolicy"] == "Never"  # required by podFailurePolicy
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container(job)["terminationMessagePath"] == "/dev/termination-log"


def test_security_context() -> None:
    job = render(CASES["all-knobs"])
    assert pod_spec(job)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container(job)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(job)["automountServiceAccountToken"] is False
    assert container(job)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod_spec(job)["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


def test_settings_fill_what_the_spec_leaves_out() -> None:
    settings = Settings(
        job_backoff_limit=5,
        job_active_deadline_seconds=99,
        job_ttl_seconds_after_finished=7,
        job_service_account="default-migrator",
        image_pull_policy="IfNotPresent",
        alembic_config="/etc/umt/alembic.ini",
    )
    job = render(CASES["minimal"], settings)
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 99
    assert job["spec"]["ttlSecondsAfterFinished"] == 7
    assert pod_spec(job)["serviceAccountName"] == "default-migrator"
    assert container(job)["imagePullPolicy"] == "IfNotPresent"
    assert "/etc/umt/alembic.ini" in container(job)["args"]
    assert container(job)["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_spec_overrides_settings_including_zero() -> None:
    settings = Settings(job_backoff_limit=5, job_ttl_seconds_after_finished=100)
    job = render(CASES["all-knobs"], settings)
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert pod_spec(job)["serviceAccountName"] == "umt-migrator"
    assert container(job)["imagePullPolicy"] == "Always"
    assert container(job)["image"] == "registry.example/umt:1.4.0"


def test_minimal_job_leaves_optional_fields_out() -> None:
    job = render(CASES["minimal"])
    for absent in ("serviceAccountName", "nodeSelector", "tolerations"):
        assert absent not in pod_spec(job)
    assert "imagePullPolicy" not in container(job)
    assert "workingDir" not in container(job)  # the image's own


def test_working_dir_is_the_containers() -> None:
    """A project whose script_location is relative to some directory runs from it."""
    assert container(render(CASES["all-knobs"]))["workingDir"] == "/srv/app"


def test_image_argument_is_used() -> None:
    """The caller picks the image (e.g. the appliedImage for a downgrade)."""
    job = render(CASES["all-knobs"], image="registry.example/umt:1.3.0")
    assert container(job)["image"] == "registry.example/umt:1.3.0"
    annotations = job["metadata"]["annotations"]
    assert annotations["migrations.umt.dev/image"] == "registry.example/umt:1.3.0"


def test_user_pod_labels_never_override_the_operators() -> None:
    job = render(CASES["all-knobs"])
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "umt-migrations"
    assert labels["team"] == "marketing"
    assert labels["migrations.umt.dev/generation"] == "7"
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["sidecar.istio.io/inject"] == "false"


def test_rendering_does_not_share_state() -> None:
    first = render(CASES["all-knobs"])
    container(first)["env"][2]["value"] = "mutated"
    container(first)["resources"]["limits"]["memory"] = "mutated"
    second = render(CASES["all-knobs"])
    assert container(second)["env"][2]["value"] == "debug"
    minimal = render(CASES["minimal"])
    container(minimal)["resources"]["limits"]["memory"] = "mutated"
    assert container(render(CASES["minimal"]))["resources"]["limits"]["memory"] == "512Mi"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_job_is_a_valid_kubernetes_object(case: str) -> None:
    """The official client's models accept the manifest and lose nothing on a round trip.

    A misspelt field name would be dropped by the model, so the round trip would differ.
    """
    from kubernetes.client import ApiClient, V1Job

    job = render(CASES[case])
    model = V1Job.from_dict(job)
    assert ApiClient().sanitize_for_serialization(model) == job
    assert model.spec.pod_failure_policy.rules[0].action == "FailJob"
