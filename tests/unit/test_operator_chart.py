"""The operator's Helm chart and the plain install rendered from it (operator/).

Everything goes through the real `helm` binary: `helm lint --strict`, `helm template` with the
default values and with non-default ones, values.schema.json rejections as users see them.
Every rendered object is validated offline against the schemas of a current Kubernetes release
(kubernetes-validate); the operator settings the Deployment sets are read back with the
operator's own `Settings.from_env`, so a value and its variable cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import charts
from tests.charts import Objects, assert_valid, by_kind, one
from umt_operator import spec as spec_ranges
from umt_operator.settings import PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "umt-migrations-operator"
RELEASE, NAMESPACE = "umt-migrations-operator", "umt-system"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())

#: Kinds no Kubernetes release schema covers: custom resources. The CRD itself is validated
#: (apiextensions.k8s.io/v1); the ServiceMonitor is checked below against the Service it scrapes.
NOT_IN_KUBERNETES_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

#: Non-default values of every kind the issue names: namespaced RBAC, HA, metrics off,
#: ServiceMonitor on, and the settings changed from their defaults.
SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "namespaced": ["--set", "watchNamespaces={team-a,team-b}"],
    "ha": ["--set", "replicaCount=3"],
    "metrics-off": ["--set", "metrics.enabled=false"],
    "service-monitor": ["--set", "metrics.serviceMonitor.enabled=true",
                        "--set", "metrics.serviceMonitor.labels.release=prometheus"],
    "everything": [
        "--set", "watchNamespaces={apps}", "--set", "replicaCount=2",
        "--set", "image.repository=registry.example/umt", "--set", "image.tag=2.3.4",
        "--set", "imagePullSecrets[0].name=regcred", "--set", "priorityClassName=ops",
        "--set", "nodeSelector.pool=ops", "--set", "tolerations[0].key=dedicated",
        "--set", "tolerations[0].operator=Exists", "--set", "extraEnv[0].name=HTTPS_PROXY",
        "--set", "extraEnv[0].value=http://proxy:3128", "--set", "serviceAccount.create=false",
        "--set", "serviceAccount.name=ops-operator", "--set", "crds.install=false",
        "--set", "leaderElection.leaseDurationSeconds=20",
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "namespace.create=true",
    ],
    "no-leader-election": ["--set", "leaderElection.enabled=false"],
    "admission-policy": ["--set", "policy.admission.enabled=true",
                         "--set", "policy.admission.namespaceSelector.matchLabels.tenant=yes",
                         "--set", "policy.allowedServiceAccounts={migrator}"],
}



def helm(binary: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm template RELEASE CHART ...` or `helm lint CHART ...`, in the release namespace."""
    return charts.helm(binary, command, CHART, *args, release=RELEASE, namespace=NAMESPACE)


def render(binary: Path, *args: str) -> Objects:
    return charts.render(binary, CHART, *args, release=RELEASE, namespace=NAMESPACE)


def container(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(objects: Objects, pod_name: str = "umt-migrations-operator-6d9f-x") -> dict[str, str]:
    """The operator container's environment as the kubelet would give it (downward API
    fields resolved for a pod of that name in the release namespace)."""
    fields = {"metadata.name": pod_name, "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for var in container(objects)["env"]:
        if "valueFrom" in var:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = var["value"]
    return env


def rules_of(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest,
             helm_binary: Path) -> tuple[str, Objects]:
    return request.param, render(helm_binary, *SCENARIOS[request.param])


@pytest.fixture(scope="module")
def rendered(helm_binary: Path) -> dict[str, Objects]:
    return {name: render(helm_binary, *args) for name, args in SCENARIOS.items()}


# --- helm lint and offline validation ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict(helm_binary: Path, name: str) -> None:
    result = helm(helm_binary, "lint", "--strict", *SCENARIOS[name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_rendered_object_is_valid_for_a_current_kubernetes(
        scenario: tuple[str, Objects]) -> None:
    name, objects = scenario
    validated = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in NOT_IN_KUBERNETES_SCHEMAS:
            continue
        assert_valid(name, obj)
        validated += 1
    assert validated >= 6, f"{name}: only {validated} objects validated"


def test_the_service_monitor_scrapes_the_metrics_service(rendered: dict[str, Objects]) -> None:
    objects = rendered["service-monitor"]
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert by_kind(rendered["default"], "ServiceMonitor") == []


# --- the Deployment ------------------------------------------------------------------------


def test_the_operator_pod_meets_the_restricted_pod_security_standard(
        scenario: tuple[str, Objects]) -> None:
    _, objects = scenario
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    assert all(set(volume) <= {"name", "emptyDir"} for volume in pod["volumes"])
    for each in pod["containers"]:
        assert each["securityContext"] == {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]


def test_probes_resources_and_ports(rendered: dict[str, Objects]) -> None:
    operator = container(rendered["default"])
    assert operator["command"] == ["python", "-m", "umt_operator"]
    ports = {port["name"]: port["containerPort"] for port in operator["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    service = one(rendered["default"], "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert [p["name"] for p in container(rendered["metrics-off"])["ports"]] == ["health"]
    assert by_kind(rendered["metrics-off"], "Service") == []
    assert env_of(rendered["metrics-off"])["UMT_OPERATOR_METRICS_PORT"] == "0"


def test_the_image_defaults_to_the_app_version_and_jobs_run_the_same_image(
        rendered: dict[str, Objects]) -> None:
    image = f"ghcr.io/umt/umt-migrations:{CHART_META['appVersion']}"
    assert container(rendered["default"])["image"] == image
    assert env_of(rendered["default"])["UMT_OPERATOR_DEFAULT_IMAGE"] == image
    assert container(rendered["everything"])["image"] == "registry.example/umt:2.3.4"
    assert env_of(rendered["everything"])["UMT_OPERATOR_DEFAULT_IMAGE"] == \
        "registry.example/umt:2.3.4"


def test_scheduling_and_pull_settings_reach_the_pod(rendered: dict[str, Objects]) -> None:
    pod = one(rendered["everything"], "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "ops"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "ops"
    assert pod["serviceAccountName"] == "ops-operator"
    assert by_kind(rendered["everything"], "ServiceAccount") == []
    assert env_of(rendered["everything"])["HTTPS_PROXY"] == "http://proxy:3128"


# --- the settings: one value per UMT_OPERATOR_* variable, same meaning ---------------------

#: Non-default values and what the operator must read from the variables they set.
SETTING_VALUES = {
    "runner.defaultImage=registry.example/runner:7": ("default_image", "registry.example/runner:7"),
    "runner.defaultImagePullPolicy=Always": ("image_pull_policy", "Always"),
    "runner.command=/usr/local/bin/migrate": ("runner_command", "/usr/local/bin/migrate"),
    "runner.alembicConfig=/srv/app/alembic.ini": ("alembic_config", "/srv/app/alembic.ini"),
    "runner.lockTimeoutSeconds=42": ("lock_timeout_seconds", 42),
    "job.backoffLimit=5": ("job_backoff_limit", 5),
    "job.activeDeadlineSeconds=600": ("job_active_deadline_seconds", 600),
    "job.ttlSecondsAfterFinished=3600": ("job_ttl_seconds_after_finished", 3600),
    "job.serviceAccountName=migrator": ("job_service_account", "migrator"),
    "metrics.port=9191": ("metrics_port", 9191),
    "health.port=8181": ("health_port", 8181),
    "watchNamespaces={apps,billing}": ("namespaces", ("apps", "billing")),
    "job.unschedulableSeconds=120": ("unschedulable_seconds", 120),
    "leaderElection.leaseDurationSeconds=30": ("lease_duration_seconds", 30),
    "fullnameOverride=umt-ops": ("lease_name", "umt-ops"),
    "policy.allowedImages={registry.example/*,ghcr.io/umt/*}": (
        "allowed_images", ("registry.example/*", "ghcr.io/umt/*")),
    "policy.allowedServiceAccounts={migrator,ops}": ("allowed_service_accounts",
                                                     ("migrator", "ops")),
}


def test_every_operator_setting_is_set_by_the_chart(rendered: dict[str, Objects]) -> None:
    env = env_of(rendered["default"])
    variables = {PREFIX + field.name.upper() for field in dataclasses.fields(Settings)}
    chart_sets = {name for name in env if name.startswith(PREFIX)}
    assert chart_sets == variables, (
        f"settings the chart does not set: {variables - chart_sets}; "
        f"variables the operator does not know: {chart_sets - variables}")
    # and the operator accepts what the chart sets by default, with the Lease on
    defaults = Settings.from_env(env)
    assert defaults.job_backoff_limit == 2 and defaults.cluster_wide
    assert defaults.leader_election and defaults.lease_name == RELEASE
    assert defaults.lease_namespace == NAMESPACE


def test_chart_values_mean_what_the_operator_settings_mean(helm_binary: Path) -> None:
    args = [arg for value in SETTING_VALUES for arg in ("--set", value)]
    settings = Settings.from_env(env_of(render(helm_binary, *args)))
    for value, (field, expected) in SETTING_VALUES.items():
        assert getattr(settings, field) == expected, value


def test_leader_election_settings(rendered: dict[str, Objects]) -> None:
    env = env_of(rendered["default"], pod_name="operator-pod-1")
    assert env["UMT_OPERATOR_LEADER_ELECTION"] == "true"
    deployment = one(rendered["default"], "Deployment")
    assert env["UMT_OPERATOR_LEASE_NAME"] == deployment["metadata"]["name"]
    assert env["UMT_OPERATOR_LEASE_NAMESPACE"] == NAMESPACE
    assert env["UMT_OPERATOR_LEASE_DURATION_SECONDS"] == "15"
    assert env["POD_NAME"] == "operator-pod-1"
    assert env_of(rendered["everything"])["UMT_OPERATOR_LEASE_DURATION_SECONDS"] == "20"
    assert env_of(rendered["no-leader-election"])["UMT_OPERATOR_LEADER_ELECTION"] == "false"


def integer_values(schema: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key, sub in (schema.get("properties") or {}).items():
        sub = schema_definitions().get(sub.get("$ref", ""), sub)
        if sub.get("type") == "integer" and "maximum" in sub:
            found[path + key] = sub
        found.update(integer_values(sub, f"{path}{key}."))
    return found


def schema_definitions() -> dict[str, dict[str, Any]]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return {f"#/definitions/{name}": sub for name, sub in schema["definitions"].items()}


#: Integer values and their variables; metrics.port's 0 ("off") is metrics.enabled=false.
INTEGER_SETTINGS = {
    "runner.lockTimeoutSeconds": "UMT_OPERATOR_LOCK_TIMEOUT_SECONDS",
    "job.backoffLimit": "UMT_OPERATOR_JOB_BACKOFF_LIMIT",
    "job.activeDeadlineSeconds": "UMT_OPERATOR_JOB_ACTIVE_DEADLINE_SECONDS",
    "job.ttlSecondsAfterFinished": "UMT_OPERATOR_JOB_TTL_SECONDS_AFTER_FINISHED",
    "health.port": "UMT_OPERATOR_HEALTH_PORT",
    "job.unschedulableSeconds": "UMT_OPERATOR_UNSCHEDULABLE_SECONDS",
    "leaderElection.leaseDurationSeconds": "UMT_OPERATOR_LEASE_DURATION_SECONDS",
}


@pytest.mark.parametrize("value", sorted(INTEGER_SETTINGS))
def test_the_schema_accepts_exactly_what_the_operator_accepts(value: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    limits = integer_values(schema)[value]
    variable = INTEGER_SETTINGS[value]
    for inside in (limits["minimum"], limits["maximum"]):
        Settings.from_env({variable: str(inside)})
    for outside in (limits["minimum"] - 1, limits["maximum"] + 1):
        with pytest.raises(ValueError, match=variable):
            Settings.from_env({variable: str(outside)})


def test_job_limits_match_the_crd_limits() -> None:
    job = json.loads((CHART / "values.schema.json").read_text())["properties"]["job"]["properties"]
    for value, limits in {"backoffLimit": spec_ranges.BACKOFF_LIMIT_RANGE,
                          "activeDeadlineSeconds": spec_ranges.ACTIVE_DEADLINE_RANGE,
                          "ttlSecondsAfterFinished": spec_ranges.TTL_AFTER_FINISHED_RANGE}.items():
        assert (job[value]["minimum"], job[value]["maximum"]) == limits, value


def every_description(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = [] if schema.get("description") or not path else [path]
    for key, sub in (schema.get("properties") or {}).items():
        missing += every_description(sub, f"{path}.{key}" if path else key)
    return missing


def test_every_value_is_described_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert every_description(schema) == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


# --- values.schema.json and the chart's own checks, as `helm template` reports them ---------

REJECTED = [
    (["--set", "job.backoffLimit=11"], "/job/backoffLimit", "maximum"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy", "must be one of 'Always'"),
    (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0", "does not match pattern"),
    (["--set", "replicas=2"], "additional properties 'replicas' not allowed", ""),
    (["--set", "metrics.port=0"], "/metrics/port", "minimum"),
    (["--set", "leaderElection.leaseDurationSeconds=fast"], "/leaderElection/leaseDurationSeconds",
     "want integer"),
    (["--set", "runner.defaultImagePullPolicy=always"], "/runner/defaultImagePullPolicy",
     "must be one of"),
    (["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
     "replicaCount > 1 needs leaderElection.enabled=true", ""),
    (["--set", "extraEnv[0].name=UMT_OPERATOR_JOB_BACKOFF_LIMIT", "--set", "extraEnv[0].value=9"],
     "extraEnv must not set UMT_OPERATOR_JOB_BACKOFF_LIMIT", ""),
    # a value removed (null, or a key left empty in a values file) is named, not a nil pointer
    (["--set", "runner.command=null"], "/runner", "missing property 'command'"),
    (["--set", "metrics=null"], "missing property 'metrics'", ""),
    (["--set", "policy.allowedImages={ghcr.io/umt/x:1 }"], "/policy/allowedImages/0",
     "does not match pattern"),
    (["--set", "policy.allowedServiceAccounts={Ops_Admin}"], "/policy/allowedServiceAccounts/0",
     "does not match pattern"),
    (["--set", "policy.admission.enabled=true", "--set", "policy.allowedImages={*}",
      "--set", "policy.allowedServiceAccounts={*}"], "has nothing to refuse", ""),
]


@pytest.mark.parametrize(("args", "where", "what"), REJECTED, ids=[r[1] for r in REJECTED])
def test_bad_values_are_rejected_with_a_readable_message(
        helm_binary: Path, args: Sequence[str], where: str, what: str) -> None:
    result = helm(helm_binary, "template", *args)
    assert result.returncode != 0 and result.stdout == ""
    assert where in result.stderr and what in result.stderr, result.stderr
    assert "panic" not in result.stderr.lower()


# --- RBAC ----------------------------------------------------------------------------------


def test_cluster_wide_rbac_by_default(rendered: dict[str, Objects]) -> None:
    objects = rendered["default"]
    role, binding = one(objects, "ClusterRole"), one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": NAMESPACE,
                                    "name": one(objects, "ServiceAccount")["metadata"]["name"]}]
    assert not any("secrets" in resource for _, resource, _ in rules_of(role))
    assert not any("*" in rule for _, _, rule in rules_of(role))
    # the only namespaced Role is leader election's, in the release namespace
    assert [r["metadata"]["namespace"] for r in by_kind(objects, "Role")] == [NAMESPACE]


def test_watch_namespaces_get_roles_and_no_cluster_rights(rendered: dict[str, Objects]) -> None:
    objects = rendered["namespaced"]
    assert by_kind(objects, "ClusterRole") == by_kind(objects, "ClusterRoleBinding") == []
    cluster_rules = rules_of(one(rendered["default"], "ClusterRole"))
    watch_roles = [r for r in by_kind(objects, "Role") if "leases" not in json.dumps(r)]
    assert sorted(r["metadata"]["namespace"] for r in watch_roles) == ["team-a", "team-b"]
    assert all(rules_of(role) == cluster_rules for role in watch_roles)
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(objects, "RoleBinding")}
    for namespace in ("team-a", "team-b"):
        assert bindings[namespace]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                                  "kind": "Role", "name": RELEASE}
        assert bindings[namespace]["subjects"][0]["namespace"] == NAMESPACE
    assert env_of(objects)["UMT_OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_the_lease_rights_name_the_lease_the_operator_uses(rendered: dict[str, Objects]) -> None:
    objects = rendered["default"]
    lease_role = next(r for r in by_kind(objects, "Role") if "leases" in json.dumps(r))
    named = [rule for rule in lease_role["rules"] if rule.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [env_of(objects)["UMT_OPERATOR_LEASE_NAME"]],
                      "verbs": ["get", "update"]}]
    assert rules_of(lease_role) == {("coordination.k8s.io", "leases", verb)
                                    for verb in ("create", "get", "update")}
    without = by_kind(rendered["no-leader-election"], "Role")
    assert not any("leases" in json.dumps(role) for role in without)


# --- high availability ---------------------------------------------------------------------


def test_several_replicas_get_a_disruption_budget_and_spread(rendered: dict[str, Objects]) -> None:
    objects = rendered["ha"]
    deployment, budget = one(objects, "Deployment"), one(objects, "PodDisruptionBudget")
    assert deployment["spec"]["replicas"] == 3
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"] == budget["spec"]["selector"]
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert by_kind(rendered["default"], "PodDisruptionBudget") == []
    assert "affinity" not in one(rendered["default"], "Deployment")["spec"]["template"]["spec"]
    # without a Lease, never two replicas at once, not even during a rollout
    assert one(rendered["no-leader-election"], "Deployment")["spec"]["strategy"] == \
        {"type": "Recreate"}


# --- the CRD: one source -------------------------------------------------------------------


def test_the_charts_crd_copy_is_identical_to_crds() -> None:
    sources = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_bytes() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert sources, "crds/ is empty"
    assert copies == sources, "the chart's CRD copy is stale: run `make manifests`"


def test_the_rendered_crd_is_the_source_plus_labels_and_keep(
        rendered: dict[str, Objects], helm_binary: Path) -> None:
    (source,) = [d for d in yaml.safe_load_all((ROOT / "crds" /
                 "schemamigrations.migrations.umt.dev.yaml").read_text()) if d]
    crd = one(rendered["default"], "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/component"] == "crd"
    strip = ("labels", "annotations")
    assert {k: v for k, v in crd["metadata"].items() if k not in strip} == \
        {k: v for k, v in source["metadata"].items() if k not in strip}
    assert {k: v for k, v in crd.items() if k != "metadata"} == \
        {k: v for k, v in source.items() if k != "metadata"}
    not_kept = one(render(helm_binary, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    assert by_kind(rendered["everything"], "CustomResourceDefinition") == []


# --- NOTES.txt and the plain install -------------------------------------------------------


def test_notes_tell_the_next_command(helm_binary: Path) -> None:
    result = subprocess.run([str(helm_binary), "install", RELEASE, str(CHART), "--namespace",
                             NAMESPACE, "--dry-run=client"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}" in notes
    assert "kubectl -n <namespace> wait --for=condition=Ready smig/umt-schema" in notes


def test_operator_dir_is_the_chart_rendered_and_never_a_python_package(tmp_path: Path) -> None:
    rendered = subprocess.run([str(ROOT / "scripts" / "render-manifests"), str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    files = sorted(str(p.relative_to(ROOT / "operator"))
                   for p in (ROOT / "operator").rglob("*") if p.is_file())
    assert files == ["crd/crd.yaml", "crd/kustomization.yaml", "image-fields.yaml",
                     "kustomization.yaml", "operator.yaml"]
    for name in files:
        assert (ROOT / "operator" / name).read_text() == (tmp_path / name).read_text(), \
            f"operator/{name} is stale: run `make manifests`"
    assert not list((ROOT / "operator").rglob("*.py"))


def test_the_plain_install(rendered: dict[str, Objects]) -> None:
    docs = [d for name in ("crd/crd.yaml", "operator.yaml")
            for d in yaml.safe_load_all((ROOT / "operator" / name).read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[:2] == ["CustomResourceDefinition", "Namespace"]
    namespace = docs[1]
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in docs)
    assert all(d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl" for d in docs)
    kustomization = yaml.safe_load((ROOT / "operator" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["operator.yaml"]  # the CRD lives apart: operator/crd/
    crd_only = yaml.safe_load((ROOT / "operator" / "crd" / "kustomization.yaml").read_text())
    assert crd_only["resources"] == ["crd.yaml"]
    assert sorted(kinds) == sorted(["CustomResourceDefinition", "Namespace"] + [
        o["kind"] for o in rendered["default"] if o["kind"] != "CustomResourceDefinition"])


# --- the tenancy policy at apply time (issue 13, finding 7) --------------------------------

POLICY_CASES = [
    # (spec, allowed by allowedImages={registry.example/umt:*,ghcr.io/umt/*} and {migrator})
    ({}, True),
    ({"image": "registry.example/umt:2.0.0"}, True),
    ({"image": "registry.example/umt@sha256:0abc"}, False),
    ({"image": "ghcr.io/umt/anything/deeper:1"}, True),
    ({"image": "ghcr.io/umt"}, False),
    ({"image": "ghcrxio/umt/x:1"}, False),  # `.` is a dot, not any character
    ({"image": "evil.example/registry.example/umt:1"}, False),  # anchored
    ({"image": "registry.example/umt-fork:1"}, False),
    ({"image": "ghcr.io/umt/umt-migrations:0.1.0"}, True),  # the runner default, always
    ({"job": {"serviceAccountName": "migrator"}}, True),
    ({"job": {"serviceAccountName": "default"}}, True),  # the Jobs' default account
    ({"job": {"serviceAccountName": "cluster-admin"}}, False),
    ({"job": {"backoffLimit": 1}}, True),
]


def _cel_allows(policy: dict[str, Any], spec: dict[str, Any]) -> bool:
    import celpy

    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel({"spec": spec})}
    return all(bool(env.program(env.compile(rule["expression"])).evaluate(activation))
               for rule in policy["spec"]["validations"])


@pytest.mark.parametrize(("spec", "allowed"), POLICY_CASES, ids=[str(c[0]) for c in POLICY_CASES])
def test_the_admission_policy_refuses_what_the_operator_refuses(
        helm_binary: Path, spec: dict[str, Any], allowed: bool) -> None:
    """The chart's ValidatingAdmissionPolicy (its CEL evaluated with cel-python) and the
    operator's policy check (PolicyDenied) agree on every case."""
    from umt_operator.spec import parse_spec

    objects = render(helm_binary, "--set", "policy.admission.enabled=true",
                     "--set", "policy.allowedImages={registry.example/umt:*,ghcr.io/umt/*}",
                     "--set", "policy.allowedServiceAccounts={migrator}")
    policy = one(objects, "ValidatingAdmissionPolicy")
    binding = one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    settings = Settings.from_env(env_of(objects))
    parsed = parse_spec({"targetRevision": "head", "database": {"urlSecretRef": {"name": "db"}},
                         **spec})
    operator_allows = not (
        settings.policy.image_problem(parsed.image or settings.default_image)
        or settings.policy.service_account_problem(parsed.job.service_account_name))
    assert operator_allows == allowed
    assert _cel_allows(policy, spec) == allowed


def test_no_admission_policy_unless_asked(rendered: dict[str, Objects]) -> None:
    assert not by_kind(rendered["default"], "ValidatingAdmissionPolicy")
    assert one(rendered["admission-policy"], "ValidatingAdmissionPolicyBinding")["spec"][
        "matchResources"] == {"namespaceSelector": {"matchLabels": {"tenant": "yes"}}}
