"""Every file in examples/ is used the way its comment says, by a test.

SchemaMigrations: valid against the CRD (schema and CEL rules), accepted by the operator's spec
parser, and applied with the real `kubectl` to the API emulator. Helm values: rendered with the
real `helm` into charts/umt. Argo CD: the argocd-cm snippets carry exactly the tested health
check and actions (the actions one in test_argocd_health.py); the Applications point at the
chart and their values render. Flux: the Kustomizations wait and order the app after the
migration; the HelmRelease's chart and values render.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import charts
from tests.charts import KUBERNETES_VERSION, Objects
from tests.integration.test_waiter import (  # noqa: F401  (fixtures)
    database,
    kubelet_options,
    operator,
    waiter_env,
)
from tests.operator_harness import (
    HEAD,
    NS,
    db_revision,
)
from tests.unit.test_crd import validate as validate_against_crd
from tests.unit.test_schema_migration_chart import (
    CRD,
    CRD_SCHEMA,
    SMIG,
    hook_manifest,
)
from tests.unit.test_umt_chart import chart  # noqa: F401  (fixture: charts/umt, deps built)
from umt_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HEALTH_LUA = (ROOT / "argocd" / "resource_customizations" / "migrations.umt.dev"
              / "SchemaMigration" / "health.lua")

SCHEMA_MIGRATIONS = ["schemamigration-minimal.yaml", "schemamigration-downgrade.yaml"]
HELM_VALUES = {"helm-values-hook.yaml": "hook", "helm-values-resource.yaml": "resource"}
ARGOCD_APPLICATIONS = {"argocd-application-sync-wave.yaml": "resource",
                       "argocd-application-presync.yaml": "hook"}
OTHERS = ["argocd-cm-health.yaml", "argocd-cm-actions.yaml", "flux-kustomization.yaml",
          "flux-helmrelease.yaml"]


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def render(binary: Path, chart_dir: Path, *args: str) -> Objects:
    return charts.render(binary, chart_dir, *args, release="umt", namespace="umt")


def render_values(binary: Path, chart_dir: Path, values: dict[str, Any],
                  tmp_path: Path) -> Objects:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return render(binary, chart_dir, "-f", str(path))


def the_migration(objects: Objects) -> tuple[str, dict[str, Any]]:
    """("resource", the SchemaMigration) or ("hook", the manifest the waiter applies)."""
    plain = [o for o in objects if (o["apiVersion"], o["kind"]) == SMIG]
    return ("resource", plain[0]) if plain else ("hook", hook_manifest(objects))


@pytest.mark.unit
def test_every_example_is_tested() -> None:
    tested = {*SCHEMA_MIGRATIONS, *HELM_VALUES, *ARGOCD_APPLICATIONS, *OTHERS}
    assert {p.name for p in EXAMPLES.iterdir()} == tested


@pytest.mark.unit
def test_the_gitops_guide_shows_every_example_and_names_only_real_files() -> None:
    guide = (ROOT / "docs" / "gitops.md").read_text()
    named = set(re.findall(r"(?:examples|charts|argocd|tests|docs)/[\w./-]*\w", guide))
    assert {f"examples/{p.name}" for p in EXAMPLES.iterdir()} <= named
    generated = {"charts/umt/charts"}  # what `helm dependency build` creates, never committed
    assert generated <= named
    assert [path for path in sorted(named - generated) if not (ROOT / path).exists()] == []


# --- SchemaMigrations ------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("name", SCHEMA_MIGRATIONS)
def test_schema_migration_is_valid(name: str) -> None:
    (resource,) = load(name)
    assert (resource["apiVersion"], resource["kind"]) == SMIG
    assert validate_against_crd(CRD_SCHEMA, json.loads(json.dumps(resource))) == []
    spec = parse_spec(resource["spec"])
    if "downgrade" in name:
        assert spec.allow_downgrade is True
        assert re.fullmatch(r"[0-9a-f]{12}", spec.target_revision)


@pytest.mark.integration
@pytest.mark.parametrize("name", SCHEMA_MIGRATIONS)
def test_schema_migration_applies_with_kubectl(name: str, kubectl: Any) -> None:
    # --validate=false: the emulator serves no OpenAPI document (tests/k8s, FACTS.md)
    (resource,) = load(name)
    # no namespace in the file: `-n` picks it, as the NOTES and docs/install.md say
    assert "namespace" not in resource["metadata"]
    kubectl("apply", "--validate=false", "-n", "umt", "-f", str(EXAMPLES / name))
    shown = json.loads(kubectl("get", "smig", resource["metadata"]["name"], "-n", "umt",
                               "-o", "json").stdout)
    assert validate_against_crd(CRD_SCHEMA, resource) == []  # fills in the CRD's defaults
    assert shown["spec"] == resource["spec"]


# --- Helm values -----------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(HELM_VALUES))
def test_helm_values_render_the_intended_mode(helm_binary: Path, chart: Path,  # noqa: F811
                                              name: str) -> None:
    lint = charts.helm(helm_binary, "lint", chart, "--strict", "-f", str(EXAMPLES / name),
                       release="umt", namespace="umt")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    objects = render(helm_binary, chart, "-f", str(EXAMPLES / name))
    mode, migration = the_migration(objects)
    assert mode == HELM_VALUES[name]
    assert migration["spec"]["database"]["urlSecretRef"] == {"name": "umt-db", "key": "url"}
    assert validate_against_crd(CRD_SCHEMA, migration) == []
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) != SMIG:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.integration
def test_helm_hook_values_migrate_through_the_real_waiter(
        helm_binary: Path, chart: Path, emulator: Any, operator: Any,  # noqa: F811  # noqa: F811
        database: str, tmp_path: Path) -> None:  # noqa: F811
    """The hook Job of examples/helm-values-hook.yaml, run as a process: its exact arguments,
    its mounted manifest, against the emulator with the real operator and PostgreSQL."""
    objects = render(helm_binary, chart, "-f", str(EXAMPLES / "helm-values-hook.yaml"),
                     "--namespace", NS)
    job = next(o for o in objects if o["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    manifest = tmp_path / "schemamigration.yaml"
    manifest.write_text(yaml.safe_dump(hook_manifest(objects)))
    args[args.index("-f") + 1] = str(manifest)  # where the ConfigMap is mounted in the pod
    result = subprocess.run([sys.executable, "-m", "umt_migrations", *args], text=True,
                            capture_output=True, env=waiter_env(emulator), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith(f"{NS}/umt-schema is Ready (generation 1)")
    assert db_revision(database) == HEAD


# --- Argo CD ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_argocd_cm_snippet_carries_the_tested_health_check() -> None:
    (config_map,) = load("argocd-cm-health.yaml")
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    group, kind = CRD["spec"]["group"], CRD["spec"]["names"]["kind"]
    # Argo CD's key for a custom health check: resource.customizations.health.<group>_<kind>
    (key,) = config_map["data"]
    assert key == f"resource.customizations.health.{group}_{kind}"
    assert config_map["data"][key] == HEALTH_LUA.read_text()


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(ARGOCD_APPLICATIONS))
def test_argocd_application_deploys_the_chart(helm_binary: Path, chart: Path,  # noqa: F811
                                              name: str, tmp_path: Path) -> None:
    (app,) = load(name)
    assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] == "umt"
    objects = render_values(helm_binary, chart, source["helm"]["valuesObject"], tmp_path)
    mode, _ = the_migration(objects)
    assert mode == ARGOCD_APPLICATIONS[name]
    if mode == "resource":  # synced and healthy before the Deployment
        waves = {o["kind"]: int(o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
                 for o in objects}
        assert waves["SchemaMigration"] < waves["Deployment"]
    else:  # Helm hooks, which Argo CD runs as PreSync
        job = next(o for o in objects if o["kind"] == "Job")
        assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
        assert app["spec"]["syncPolicy"]["retry"]["limit"] == 0


# --- Flux ------------------------------------------------------------------------------------


@pytest.mark.unit
def test_flux_kustomizations_wait_for_the_migration_before_the_app() -> None:
    schema, app = load("flux-kustomization.yaml")
    for each in (schema, app):
        assert (each["apiVersion"], each["kind"]) == ("kustomize.toolkit.fluxcd.io/v1",
                                                      "Kustomization")
        assert each["spec"]["sourceRef"]["kind"] == "GitRepository"
        assert each["spec"]["path"].startswith("./")
    assert schema["spec"]["wait"] is True
    assert app["spec"]["dependsOn"] == [{"name": schema["metadata"]["name"]}]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, duration
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@pytest.mark.unit
def test_flux_helm_release_runs_the_hook_within_its_timeout(
        helm_binary: Path, chart: Path, tmp_path: Path) -> None:  # noqa: F811
    (release,) = load("flux-helmrelease.yaml")
    assert (release["apiVersion"], release["kind"]) == ("helm.toolkit.fluxcd.io/v2",
                                                        "HelmRelease")
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    values = release["spec"]["values"]
    objects = render_values(helm_binary, chart, values, tmp_path)
    mode, migration = the_migration(objects)
    assert mode == "hook" and migration["spec"]["targetRevision"] == "head"
    waiter_timeout = values["schema-migration"]["hook"]["timeoutSeconds"]
    assert waiter_timeout < _seconds(release["spec"]["timeout"])
    assert release["spec"]["upgrade"]["remediation"]["retries"] == 0
