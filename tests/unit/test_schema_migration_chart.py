"""The reusable chart charts/schema-migration, through the real `helm` binary.

Hook mode: the hook objects, their weights and delete policies, the Job that runs the waiter
(`umt-migrations apply`) with the SchemaMigration mounted from a ConfigMap, RBAC limited to
what the waiter calls. Resource mode: the SchemaMigration as a plain object with its sync wave.
Every built-in object is validated offline against a current Kubernetes release
(kubernetes-validate); the SchemaMigration against the CRD (schema and CEL rules, with the
validator of tests/unit/test_crd.py) and the operator's own spec parser.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import charts
from tests.charts import Objects, assert_valid, one
from tests.unit.test_crd import validate as validate_against_crd
from umt_migrations.cli import build_parser
from umt_operator.jobs import render_job
from umt_operator.settings import Settings
from umt_operator.spec import parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "schema-migration"
CRD = yaml.safe_load((ROOT / "crds" / "schemamigrations.migrations.umt.dev.yaml").read_text())
CRD_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RELEASE, NAMESPACE = "shop", "shop-prod"
SMIG = ("migrations.umt.dev/v1alpha1", "SchemaMigration")
HOOK_KINDS = ["ConfigMap", "Job", "Role", "RoleBinding", "ServiceAccount"]

SCENARIOS: dict[str, list[str]] = {
    "hook-default": [],
    "resource-default": ["--set", "mode=resource"],
    "hook-every-knob": [
        "--set", "name=shop-db-schema", "--set", "targetRevision=0abb288d754e",
        "--set", "allowDowngrade=true", "--set", "database.urlSecretRef.name=shop-database",
        "--set", "database.urlSecretRef.key=dsn", "--set", "image.repository=registry.example/shop",
        "--set", "image.tag=2.0.1", "--set", "image.pullPolicy=Always",
        "--set", "alembicConfig=/srv/alembic.ini", "--set", "job.backoffLimit=1",
        "--set", "job.activeDeadlineSeconds=900", "--set", "job.serviceAccountName=migrator",
        "--set", "job.podLabels.team=shop", "--set", "job.podAnnotations.note=kept",
        "--set", "hook.timeoutSeconds=900",
        "--set", "hook.weight=5", "--set", "hook.backoffLimit=0",
        "--set", "hook.nodeSelector.pool=system", "--set", "hook.tolerations[0].key=dedicated",
        "--set", "hook.tolerations[0].operator=Exists",
        "--set", "hook.imagePullSecrets[0].name=regcred", "--set", "labels.team=shop",
    ],
    "resource-every-knob": ["--set", "mode=resource", "--set", "resource.syncWave=-5",
                            "--set", "targetRevision=heads", "--set", "annotations.owner=shop"],
    "global-image": ["--set", "global.image.repository=registry.example/umt",
                     "--set", "global.image.tag=3.1.0"],
}



def helm(binary: Path, command: str, *args: str,
         chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    """`helm template RELEASE CHART ...` or `helm lint CHART ...`, in the release namespace."""
    return charts.helm(binary, command, chart, *args, release=RELEASE, namespace=NAMESPACE)


def render(binary: Path, *args: str, chart: Path = CHART) -> Objects:
    return charts.render(binary, chart, *args, release=RELEASE, namespace=NAMESPACE)


def pod_specs(objects: Objects) -> list[dict[str, Any]]:
    return [obj["spec"]["template"]["spec"] for obj in objects
            if obj["kind"] in ("Job", "Deployment")]


def assert_restricted(pod: dict[str, Any]) -> None:
    """The Pod Security Standard "restricted" (kubernetes.io/docs/concepts/security/
    pod-security-standards/), plus a read-only root filesystem with /tmp on an emptyDir."""
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all(set(volume) <= {"name", "emptyDir", "configMap"} for volume in pod["volumes"])
    required = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}
    for each in pod["containers"] + pod.get("initContainers", []):
        context = each["securityContext"]
        assert {key: context.get(key) for key in required} == required, each["name"]
        # nothing else, but the container may repeat the pod's runAsNonRoot
        assert set(context) - set(required) <= {"runAsNonRoot"}, each["name"]
        assert context.get("runAsNonRoot", True) is True, each["name"]
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]
        assert "ports" not in each or all("hostPort" not in p for p in each["ports"])


def assert_valid_schema_migration(resource: dict[str, Any]) -> None:
    assert (resource["apiVersion"], resource["kind"]) == SMIG
    errors = validate_against_crd(CRD_SCHEMA, yaml.safe_load(yaml.safe_dump(resource)))
    assert errors == [], errors
    parse_spec(resource["spec"])  # the operator accepts it (raises InvalidSpec otherwise)


def hook_manifest(objects: Objects) -> dict[str, Any]:
    """The SchemaMigration the waiter applies: the file the Job passes with -f."""
    job = one(objects, "Job")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    path = Path(args[args.index("-f") + 1])
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"]
                if path.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = one(objects, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    key = str(path.relative_to(mount["mountPath"]))
    return yaml.safe_load(config_map["data"][key])


@pytest.fixture(scope="module")
def rendered(helm_binary: Path) -> dict[str, Objects]:
    return {name: render(helm_binary, *args) for name, args in SCENARIOS.items()}


# --- lint, validation, pod security ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict(helm_binary: Path, name: str) -> None:
    result = helm(helm_binary, "lint", "--strict", *SCENARIOS[name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_is_valid(rendered: dict[str, Objects], name: str) -> None:
    for obj in rendered[name]:
        if (obj["apiVersion"], obj["kind"]) == SMIG:
            assert_valid_schema_migration(obj)
            continue
        assert_valid(name, obj)
    if name.startswith("hook"):
        assert_valid_schema_migration(hook_manifest(rendered[name]))


def operator_pod(resource: dict[str, Any]) -> dict[str, Any]:
    """The pod of the Job the operator creates for a SchemaMigration this chart rendered."""
    job = render_job(name=resource["metadata"]["name"], namespace=NAMESPACE, uid="uid-1",
                     generation=1, spec=parse_spec(resource["spec"]), settings=Settings(),
                     image=resource["spec"].get("image") or Settings().default_image)
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_pod_is_restricted(rendered: dict[str, Objects], name: str) -> None:
    """Hook mode's own Job; in resource mode the chart renders no pod (only the resource), so
    the pod checked is the one the operator's Job runs for that resource."""
    pods = pod_specs(rendered[name])
    if name.startswith("resource"):
        assert pods == []
        (resource,) = rendered[name]
        pods = [operator_pod(resource)]
    assert pods, f"{name}: no pod to check"
    for pod in pods:
        assert_restricted(pod)


# --- hook mode -------------------------------------------------------------------------------


def test_hook_mode_renders_only_hooks(rendered: dict[str, Objects]) -> None:
    objects = rendered["hook-default"]
    assert sorted(obj["kind"] for obj in objects) == HOOK_KINDS
    for obj in objects:
        annotations = obj["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade", obj["kind"]
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["name"] == "shop-schema-migrate"


def test_hook_weights_put_rbac_and_manifest_before_the_job(rendered: dict[str, Objects]) -> None:
    for name, job_weight in (("hook-default", 0), ("hook-every-knob", 5)):
        weights = {obj["kind"]: int(obj["metadata"]["annotations"]["helm.sh/hook-weight"])
                   for obj in rendered[name]}
        assert weights.pop("Job") == job_weight
        assert set(weights.values()) == {job_weight - 10}


def test_delete_policies_replace_the_previous_job_and_keep_a_failed_one(
        rendered: dict[str, Objects]) -> None:
    for obj in rendered["hook-default"]:
        policies = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
        # the previous release's Job is deleted before the new one is created: never
        # "job already exists"; a failed Job stays (no hook-failed) for `kubectl logs`
        assert sorted(policies) == ["before-hook-creation", "hook-succeeded"], obj["kind"]


def test_helm_4_prints_the_logs_of_a_failed_hook_job(rendered: dict[str, Objects]) -> None:
    job = one(rendered["hook-default"], "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook-output-log-policy"] == "hook-failed"
    others = [o for o in rendered["hook-default"] if o["kind"] != "Job"]
    assert all("helm.sh/hook-output-log-policy" not in o["metadata"]["annotations"]
               for o in others)


def test_the_job_runs_the_waiter_on_the_mounted_manifest(rendered: dict[str, Objects]) -> None:
    job = one(rendered["hook-default"], "Job")
    pod = job["spec"]["template"]["spec"]
    (waiter,) = pod["containers"]
    assert waiter["image"] == f"ghcr.io/umt/umt-migrations:{APP_VERSION}"
    assert waiter["command"] == ["umt-migrations"]
    args = waiter["args"]
    assert args[:2] == ["apply", "-f"]
    assert args[args.index("--namespace") + 1] == NAMESPACE
    assert args[args.index("--timeout") + 1] == "270"
    assert args[args.index("--field-manager") + 1]
    assert pod["restartPolicy"] == "Never"
    assert waiter["terminationMessagePolicy"] == "FallbackToLogsOnError"
    manifest = hook_manifest(rendered["hook-default"])
    assert manifest["metadata"] == {
        "name": "shop-schema", "namespace": NAMESPACE,
        "labels": manifest["metadata"]["labels"],
        # applied by the waiter, yet adoptable by Helm after a switch to resource mode
        "annotations": {"meta.helm.sh/release-name": RELEASE,
                        "meta.helm.sh/release-namespace": NAMESPACE},
    }
    assert manifest["spec"] == {
        "targetRevision": "head", "allowDowngrade": False,
        "database": {"urlSecretRef": {"name": "shop-db", "key": "url"}},
        "image": f"ghcr.io/umt/umt-migrations:{APP_VERSION}", "imagePullPolicy": "IfNotPresent",
        # `helm template` renders revision 1; each upgrade is a new generation
        "job": {"podAnnotations": {"migrations.umt.dev/helm-revision": "1"}},
    }


def test_a_stalled_or_timed_out_waiter_is_not_retried(rendered: dict[str, Objects]) -> None:
    spec = one(rendered["hook-default"], "Job")["spec"]
    fail_job, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob"
    assert fail_job["onExitCodes"] == {"containerName": "apply", "operator": "In",
                                       "values": [2, 3, 4, 6]}
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert spec["backoffLimit"] == 2  # API errors (exit 5) are retried
    assert spec["activeDeadlineSeconds"] > 270  # the waiter times out first, with a message
    assert "ttlSecondsAfterFinished" not in spec  # Helm deletes it, by policy


def test_hook_rbac_is_limited_to_what_the_waiter_calls(rendered: dict[str, Objects]) -> None:
    objects = rendered["hook-default"]
    role, binding, account = (one(objects, k) for k in ("Role", "RoleBinding", "ServiceAccount"))
    rules = {(group, resource, verb, tuple(rule.get("resourceNames", ())))
             for rule in role["rules"] for group in rule["apiGroups"]
             for resource in rule["resources"] for verb in rule["verbs"]}
    # get and server-side apply, then list and watch with the field selector metadata.name:
    # all of them name the object; "create" (an apply that creates it) cannot be narrowed
    assert rules == {("migrations.umt.dev", "schemamigrations", verb, ("shop-schema",))
                     for verb in ("get", "patch", "list", "watch")} | {
        ("migrations.umt.dev", "schemamigrations", "create", ())}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    pod = one(objects, "Job")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False  # only the hook pod gets a token
    assert pod["automountServiceAccountToken"] is True


def test_every_knob_reaches_the_job_and_the_manifest(rendered: dict[str, Objects]) -> None:
    objects = rendered["hook-every-knob"]
    manifest = hook_manifest(objects)
    assert manifest["metadata"]["name"] == "shop-db-schema"
    assert manifest["metadata"]["labels"]["team"] == "shop"
    assert manifest["spec"] == {
        "targetRevision": "0abb288d754e", "allowDowngrade": True,
        "database": {"urlSecretRef": {"name": "shop-database", "key": "dsn"}},
        "image": "registry.example/shop:2.0.1", "imagePullPolicy": "Always",
        "alembic": {"config": "/srv/alembic.ini"},
        "job": {"backoffLimit": 1, "activeDeadlineSeconds": 900,
                "serviceAccountName": "migrator", "podLabels": {"team": "shop"},
                "podAnnotations": {"note": "kept", "migrations.umt.dev/helm-revision": "1"}},
    }
    job = one(objects, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/shop:2.0.1"
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert job["spec"]["backoffLimit"] == 0
    args = pod["containers"][0]["args"]
    assert args[args.index("--timeout") + 1] == "900"
    role = one(objects, "Role")
    assert role["rules"][0]["resourceNames"] == ["shop-db-schema"]


def test_an_application_chart_names_the_image_once(rendered: dict[str, Objects]) -> None:
    image = "registry.example/umt:3.1.0"
    assert hook_manifest(rendered["global-image"])["spec"]["image"] == image
    assert one(rendered["global-image"], "Job")["spec"]["template"]["spec"]["containers"][0][
        "image"] == image


# --- resource mode ---------------------------------------------------------------------------


def test_resource_mode_renders_the_schema_migration_alone(rendered: dict[str, Objects]) -> None:
    (resource,) = rendered["resource-default"]
    assert (resource["apiVersion"], resource["kind"]) == SMIG
    annotations = resource["metadata"]["annotations"]
    assert annotations == {"argocd.argoproj.io/sync-wave": "-1"}  # before the app's wave 0
    assert not any(key.startswith("helm.sh/hook") for key in annotations)
    assert resource["spec"]["targetRevision"] == "head"
    (custom,) = rendered["resource-every-knob"]
    assert custom["metadata"]["annotations"] == {"argocd.argoproj.io/sync-wave": "-5",
                                                 "owner": "shop"}
    assert custom["spec"]["targetRevision"] == "heads"


def test_only_a_real_change_reruns_without_rerun_on_upgrade(
        helm_binary: Path) -> None:
    def job_of(*args: str) -> dict[str, Any] | None:
        (resource,) = render(helm_binary, "--set", "mode=resource", *args)
        return resource["spec"].get("job")

    assert job_of() == {"podAnnotations": {"migrations.umt.dev/helm-revision": "1"}}
    assert job_of("--set", "rerunOnUpgrade=false") is None
    assert job_of("--set", "rerunOnUpgrade=false", "--set", "job.backoffLimit=3") == {
        "backoffLimit": 3}


def test_both_modes_render_the_same_schema_migration(rendered: dict[str, Objects]) -> None:
    (resource,) = rendered["resource-default"]
    hook = hook_manifest(rendered["hook-default"])
    assert hook["spec"] == resource["spec"]
    assert hook["metadata"]["labels"] == resource["metadata"]["labels"]


# --- values.schema.json ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "mode=hooks"], "at '/mode': value must be one of 'hook', 'resource'"),
        (["--set", "targetRevision=head-1"], "at '/targetRevision'"),
        (["--set", "targetRevision=+1"], "at '/targetRevision'"),
        (["--set", "job.backoffLimit=11"], "at '/job/backoffLimit': maximum"),
        (["--set", "targetRevison=head"], "additional properties 'targetRevison' not allowed"),
        (["--set", "database.urlSecretRef.name=Bad_Name"], "at '/database/urlSecretRef/name'"),
        (["--set", "hook.deletePolicy=hook-succeded"], "at '/hook/deletePolicy'"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "hook=null"], "missing property 'hook'"),
        (["--set", "resource.syncWave=null"], "at '/resource': missing property 'syncWave'"),
    ],
    ids=["mode", "relative-target", "plus-one", "backoff", "typo", "secret-name",
         "delete-policy", "pull-policy", "hook-removed", "sync-wave-removed"],
)
def test_bad_values_are_rejected_readably(helm_binary: Path, args: list[str],
                                          message: str) -> None:
    result = helm(helm_binary, "template", *args)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


# --- the command line the Job runs is the waiter's ---------------------------------------------


def test_the_job_arguments_are_the_waiters(rendered: dict[str, Objects]) -> None:
    for name, timeout in (("hook-default", 270.0), ("hook-every-knob", 900.0)):
        waiter = one(rendered[name], "Job")["spec"]["template"]["spec"]["containers"][0]
        assert waiter["command"] == ["umt-migrations"]  # the console script of the image
        parsed = build_parser().parse_args(waiter["args"])
        assert parsed.command == "apply"
        assert parsed.filename == "/etc/schema-migration/schemamigration.yaml"
        assert parsed.namespace == NAMESPACE
        assert parsed.timeout == timeout
        assert parsed.field_manager == "schema-migration-hook"


# --- review (spec.review) ---------------------------------------------------------------------


def test_review_values_reach_the_resource_and_the_waiter(helm_binary: Path) -> None:
    digest = "sha256:" + "ab" * 32
    objects = render(helm_binary, "--set", "review.approval=OnFindings", "--set",
                     "review.lint=Block", "--set", f"review.approvedPlanDigest={digest}")
    resource = hook_manifest(objects)
    assert resource["spec"]["review"] == {"approval": "OnFindings", "lint": "Block",
                                          "approvedPlanDigest": digest}
    assert_valid_schema_migration(resource)
    args = one(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--approve-set-key") + 1] == "review.approvedPlanDigest"
    assert "review" not in hook_manifest(render(helm_binary))["spec"]  # no review by default
    resource_mode = render(helm_binary, "--set", "mode=resource", "--set", "review.drift=Periodic")
    assert one(resource_mode, "SchemaMigration")["spec"]["review"] == {"drift": "Periodic"}


def test_a_bad_review_value_is_refused(helm_binary: Path) -> None:
    for bad in ("review.lint=block", "review.approvedPlanDigest=abc", "review.unknown=1"):
        proc = subprocess.run([str(helm_binary), "template", "r", str(CHART), "--set", bad],
                              capture_output=True, text=True, check=False)
        assert proc.returncode != 0, bad
        assert "review" in proc.stderr, proc.stderr
