"""The example application chart charts/umt: the app rolled out only after its migration,
with the wait-for-schema gate, through the real `helm` binary.

charts/umt depends on charts/schema-migration (`file://../schema-migration`). Nothing that
`helm dependency build` generates is committed: the fixture copies both charts to a temporary
folder and builds the dependency there, so every run tests the subchart as it is in the tree.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import charts
from tests.charts import Objects, assert_valid, one
from tests.unit.test_schema_migration_chart import (
    HOOK_KINDS,
    SMIG,
    assert_restricted,
    assert_valid_schema_migration,
    hook_manifest,
)
from umt_migrations.cli import build_parser

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "charts" / "umt"
META = yaml.safe_load((SOURCE / "Chart.yaml").read_text())
VALUES = yaml.safe_load((SOURCE / "values.yaml").read_text())
RELEASE, NAMESPACE = "umt", "umt"
IMAGE = f"ghcr.io/umt/umt-migrations:{META['appVersion']}"

SCENARIOS: dict[str, list[str]] = {
    "hook": [],
    "resource": ["--set", "schema-migration.mode=resource"],
    "own-app": [
        "--set", "app.image.repository=registry.example/umt-web", "--set", "app.image.tag=7.2.0",
        "--set", "app.command={/app/bin/serve}", "--set-string", "app.args={--port,9000}",
        "--set", "app.port=9000", "--set", "app.env[0].name=LOG_LEVEL",
        "--set", "app.env[0].value=info", "--set", "global.image.tag=0.2.0",
        "--set", "database.urlSecretRef.name=umt-prod-db",
        "--set", "schema-migration.database.urlSecretRef.name=umt-prod-db",
        "--set", "schema-migration.targetRevision=0abb288d754e",
    ],
    "no-gate": ["--set", "gate.enabled=false", "--set", "service.enabled=false"],
}



def helm(binary: Path, chart: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return charts.helm(binary, command, chart, *args, release=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def chart(helm_binary: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    """charts/umt with its dependency built, in a copy (nothing generated lands in the tree)."""
    built = charts.umt_chart(helm_binary, tmp_path_factory.mktemp("charts"))
    assert [p.name for p in (built / "charts").iterdir()] == ["schema-migration-0.1.0.tgz"]
    return built


@pytest.fixture(scope="module")
def rendered(helm_binary: Path, chart: Path) -> dict[str, Objects]:
    return {name: charts.render(helm_binary, chart, *args, release=RELEASE, namespace=NAMESPACE)
            for name, args in SCENARIOS.items()}


def pod_of(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def container(objects: Objects, name: str) -> dict[str, Any]:
    pod = pod_of(objects)
    (found,) = [c for c in pod["containers"] + pod.get("initContainers", [])
                if c["name"] == name]
    return found


def database_url_source(each: dict[str, Any]) -> dict[str, str]:
    (env,) = [e for e in each["env"] if e["name"] == "DATABASE_URL"]
    return env["valueFrom"]["secretKeyRef"]


def migration(objects: Objects) -> dict[str, Any]:
    """The SchemaMigration of the release, whichever the mode."""
    plain = [o for o in objects if (o["apiVersion"], o["kind"]) == SMIG]
    return plain[0] if plain else hook_manifest(objects)


# --- the chart as a whole --------------------------------------------------------------------


def test_generated_dependency_files_are_not_committed() -> None:
    tracked = subprocess.run(["git", "ls-files", "charts/umt"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked and not [p for p in tracked if p.startswith("charts/umt/charts/")
                            or p.endswith("Chart.lock")]
    assert META["dependencies"] == [{"name": "schema-migration", "version": "0.1.0",
                                     "repository": "file://../schema-migration"}]


def test_the_image_tag_is_the_app_version() -> None:
    assert VALUES["global"]["image"] == {"repository": "ghcr.io/umt/umt-migrations",
                                         "tag": META["appVersion"], "pullPolicy": "IfNotPresent"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict(helm_binary: Path, chart: Path, name: str) -> None:
    result = helm(helm_binary, chart, "lint", "--strict", *SCENARIOS[name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_is_valid_and_every_pod_restricted(rendered: dict[str, Objects],
                                                         name: str) -> None:
    for obj in rendered[name]:
        if (obj["apiVersion"], obj["kind"]) == SMIG:
            continue
        assert_valid(name, obj)
        if obj["kind"] in ("Deployment", "Job"):
            assert_restricted(obj["spec"]["template"]["spec"])
    assert_valid_schema_migration(migration(rendered[name]))


# --- rolled out only after the migration ----------------------------------------------------


def test_hook_mode_migrates_before_the_deployment(rendered: dict[str, Objects]) -> None:
    objects = rendered["hook"]
    hooks = sorted(o["kind"] for o in objects if "helm.sh/hook" in
                   (o["metadata"].get("annotations") or {}))
    assert hooks == HOOK_KINDS  # Helm runs these, and waits for the Job, before the rest
    assert one(objects, "Job")["metadata"]["annotations"]["helm.sh/hook"] == \
        "pre-install,pre-upgrade"
    app = [o for o in objects if "helm.sh/hook" not in (o["metadata"].get("annotations") or {})]
    assert sorted(o["kind"] for o in app) == ["Deployment", "Service"]
    assert not [o for o in objects if (o["apiVersion"], o["kind"]) == SMIG]


def test_resource_mode_syncs_the_migration_in_an_earlier_wave(
        rendered: dict[str, Objects]) -> None:
    objects = rendered["resource"]
    waves = {o["kind"]: int(o["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
             for o in objects}
    assert waves["SchemaMigration"] < waves["Deployment"] == waves["Service"]
    assert not any("helm.sh/hook" in (o["metadata"].get("annotations") or {}) for o in objects)


def test_the_deployment_records_its_target_outside_the_pod_template(
        rendered: dict[str, Objects]) -> None:
    def target(objects: Objects) -> str:
        return one(objects, "Deployment")["metadata"]["annotations"][
            "migrations.umt.dev/target-revision"]

    assert target(rendered["hook"]) == "head"
    assert target(rendered["own-app"]) == "0abb288d754e"
    template = one(rendered["hook"], "Deployment")["spec"]["template"]["metadata"]
    assert "annotations" not in template


def pod_template(helm_binary: Path, chart: Path, *args: str) -> dict[str, Any]:
    objects = charts.render(helm_binary, chart, *args, release=RELEASE, namespace=NAMESPACE)
    return one(objects, "Deployment")["spec"]["template"]


DOWNGRADE = ["--set", "schema-migration.targetRevision=0abb288d754e",
             "--set", "schema-migration.allowDowngrade=true"]


@pytest.mark.parametrize("mode", ["hook", "resource"])
def test_a_database_only_rollback_does_not_roll_the_app(helm_binary: Path,
                                                        chart: Path, mode: str) -> None:
    """A change of target alone leaves the pod template as it was: Kubernetes starts no new
    pod (a new pod would wait in its gate for a schema its image expects, newer than the
    target). The migration itself does change."""
    base = ["--set", f"schema-migration.mode={mode}"]
    assert pod_template(helm_binary, chart, *base) == pod_template(helm_binary, chart, *base,
                                                                   *DOWNGRADE)
    before = charts.render(helm_binary, chart, *base, release=RELEASE, namespace=NAMESPACE)
    after = charts.render(helm_binary, chart, *base, *DOWNGRADE, release=RELEASE,
                          namespace=NAMESPACE)
    assert migration(before)["spec"]["targetRevision"] == "head"
    assert migration(after)["spec"]["targetRevision"] == "0abb288d754e"
    assert migration(after)["spec"]["allowDowngrade"] is True


def test_the_rollback_recipe_rolls_the_app_back_and_downgrades_with_the_newer_image(
        helm_binary: Path, chart: Path) -> None:
    """docs/gitops.md's rollback: global.image.tag names the older release (app and gate),
    schema-migration.image.tag the newer one, which holds the downgrade steps."""
    objects = charts.render(helm_binary, chart, "--set", "global.image.tag=0.0.9",
                            "--set", "schema-migration.image.tag=0.1.0", *DOWNGRADE,
                            release=RELEASE, namespace=NAMESPACE)
    older = "ghcr.io/umt/umt-migrations:0.0.9"
    assert container(objects, "app")["image"] == older
    assert container(objects, "wait-for-schema")["image"] == older
    assert migration(objects)["spec"]["image"] == "ghcr.io/umt/umt-migrations:0.1.0"
    hook_job = [o for o in objects if o["kind"] == "Job"]
    assert [c["image"] for c in hook_job[0]["spec"]["template"]["spec"]["containers"]] == [
        "ghcr.io/umt/umt-migrations:0.1.0"]
    new_image = pod_template(helm_binary, chart, "--set", "global.image.tag=0.0.9")
    assert new_image != pod_template(helm_binary, chart)  # a new image does roll the app


def test_notes_and_readme_say_the_dependency_must_be_built(
        helm_binary: Path, chart: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(helm_binary), "install", RELEASE, str(chart), "--namespace",
                             NAMESPACE, "--dry-run=client"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    notes = " ".join(result.stdout.split("NOTES:", 1)[1].split())
    assert "run `helm dependency build charts/umt` (or `make charts`)" in notes
    assert "targetRevision alone does not roll the app's pods" in notes
    readme = (SOURCE / "README.md").read_text()
    assert "helm dependency build charts/umt\n" in readme
    fresh = tmp_path / "umt"  # as in a fresh checkout, even after `make charts` here
    shutil.copytree(SOURCE, fresh, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    unbuilt = subprocess.run([str(helm_binary), "install", RELEASE, str(fresh), "--namespace",
                              NAMESPACE, "--dry-run=client"], capture_output=True, text=True,
                             timeout=60)
    assert unbuilt.returncode != 0
    assert unbuilt.stderr.strip() in readme  # the error the README shows is Helm's own


# --- the gate and the app --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hook", "resource", "own-app"])
def test_the_gate_waits_with_the_release_image_and_the_app_url(rendered: dict[str, Objects],
                                                               name: str) -> None:
    objects = rendered[name]
    pod = pod_of(objects)
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-schema"]
    gate = container(objects, "wait-for-schema")
    assert gate["command"] == ["umt-migrations"]
    assert gate["args"] == ["wait-for-schema", "--timeout", "600", "--interval", "2"]
    # the gate knows the head of the image the migration runs
    assert gate["image"] == migration(objects)["spec"]["image"]
    # ...and reads the database through the same Secret as the app and the migration
    secret = migration(objects)["spec"]["database"]["urlSecretRef"]
    assert database_url_source(gate) == secret
    assert database_url_source(container(objects, "app")) == secret
    # no Kubernetes rights needed: no token in the app's pods
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


def test_defaults_run_the_placeholder_app_from_the_release_image(
        rendered: dict[str, Objects], tmp_path: Path) -> None:
    app = container(rendered["hook"], "app")
    assert app["image"] == IMAGE == container(rendered["hook"], "wait-for-schema")["image"]
    assert app["ports"] == [{"name": "http", "containerPort": 8080}]
    assert app["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    command = app["command"]
    assert command[:4] == ["python", "-m", "http.server", "8080"]
    # Run the default command (on a free port, in an empty folder like the pod's /tmp) and
    # probe it the way the kubelet's readiness probe will.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    local = [sys.executable, *command[1:3], str(port), "--bind", "127.0.0.1",
             "--directory", str(tmp_path)]
    assert command[4:6] == ["--bind", "0.0.0.0"] and command[6:] == ["--directory", "/tmp"]
    # It says "Serving HTTP on ..." once its socket listens (unbuffered, so no polling).
    server = subprocess.Popen(local, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("Serving HTTP on")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            status = response.status
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert status == 200


def test_a_team_plugs_in_its_own_app(rendered: dict[str, Objects]) -> None:
    objects = rendered["own-app"]
    app = container(objects, "app")
    assert app["image"] == "registry.example/umt-web:7.2.0"
    assert app["command"] == ["/app/bin/serve"] and app["args"] == ["--port", "9000"]
    assert app["ports"] == [{"name": "http", "containerPort": 9000}]
    assert {"name": "LOG_LEVEL", "value": "info"} in app["env"]
    # the gate and the migration follow the release image, not the app's
    assert container(objects, "wait-for-schema")["image"] == "ghcr.io/umt/umt-migrations:0.2.0"
    assert migration(objects)["spec"]["image"] == "ghcr.io/umt/umt-migrations:0.2.0"
    assert migration(objects)["spec"]["targetRevision"] == "0abb288d754e"


def test_the_gate_can_be_turned_off(rendered: dict[str, Objects]) -> None:
    assert "initContainers" not in pod_of(rendered["no-gate"])
    assert [o["kind"] for o in rendered["no-gate"] if o["kind"] == "Service"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "app.replicas=-1"], "umt:\n- at '/app/replicas': minimum"),
        (["--set", "gate.timeoutSeconds=0"], "at '/gate/timeoutSeconds': minimum"),
        (["--set", "gate.timeoutSeconds=86401"], "at '/gate/timeoutSeconds': maximum"),
        (["--set", "gate.timout=30"], "additional properties 'timout' not allowed"),
        (["--set", "global.image.tag="], "at '/global/image/tag'"),
        (["--set", "schema-migration.mode=sync"],
         "schema-migration:\n- at '/mode': value must be one of 'hook', 'resource'"),
        (["--set", "app.image=null"], "at '/app': missing property 'image'"),
        (["--set", "schema-migration.hook=null"],
         "schema-migration:\n- at '': missing property 'hook'"),
    ],
    ids=["replicas", "gate-timeout", "gate-timeout-above-max", "typo", "empty-tag",
         "subchart-mode", "app-image-removed", "subchart-hook-removed"],
)
def test_bad_values_are_rejected_readably(helm_binary: Path, chart: Path,
                                          args: list[str], message: str) -> None:
    result = helm(helm_binary, chart, "template", *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_the_gate_arguments_are_the_gates(rendered: dict[str, Objects]) -> None:
    gate = container(rendered["hook"], "wait-for-schema")
    parsed = build_parser().parse_args(gate["args"])
    assert parsed.command == "wait-for-schema"
    assert (parsed.timeout, parsed.interval) == (600.0, 2.0)
    assert {e["name"] for e in gate["env"]} == {"DATABASE_URL"}  # the gate reads no other input
