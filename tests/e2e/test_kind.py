"""End to end on a real cluster (kind): real image, real apiserver (schema, CEL, RBAC), real
Jobs. Opt-in: ``UMT_E2E=1 make e2e`` on a machine with Docker, kind and kubectl.

The suite builds the image, loads it into a kind cluster (created for the run unless
``UMT_E2E_CLUSTER`` names an existing one), installs PostgreSQL, the CRD and the operator
with its RBAC from ``deploy/``, and runs the scenarios of the emulator suite against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("UMT_E2E_IMAGE", "umt-migrations:e2e")
NS = "umt-e2e"
HEAD = "240cfb931a0a"
FIRST = "0abb288d754e"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("UMT_E2E") != "1",
        reason="opt-in: UMT_E2E=1 with Docker, kind and kubectl (a real cluster)",
    ),
]


def sh(*args: str, input: str | None = None, check: bool = True, timeout: float = 600,
       env: dict | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            pytest.fail(f"UMT_E2E=1 but {tool} is not on PATH", pytrace=False)
    name = os.environ.get("UMT_E2E_CLUSTER") or f"umt-e2e-{uuid.uuid4().hex[:6]}"
    created = not os.environ.get("UMT_E2E_CLUSTER")
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    if created:
        sh("kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig),
           "--wait", "120s")
    else:
        kubeconfig.write_text(sh("kind", "get", "kubeconfig", "--name", name).stdout)
    env = {"KUBECONFIG": str(kubeconfig)}
    try:
        sh("docker", "build", "-t", IMAGE, str(ROOT), timeout=1200)
        sh("kind", "load", "docker-image", IMAGE, "--name", name)
        install(env)
        yield env
    finally:
        if created and not os.environ.get("UMT_E2E_KEEP"):
            sh("kind", "delete", "cluster", "--name", name, check=False)


def kubectl(env: dict, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return sh("kubectl", *args, env=env, **kw)  # type: ignore[arg-type]


def install(env: dict) -> None:
    kubectl(env, "apply", "-f", str(ROOT / "crds"))
    kubectl(env, "wait", "--for=condition=Established",
            "crd/schemamigrations.migrations.umt.dev", "--timeout=60s")
    manifest = (ROOT / "deploy" / "operator.yaml").read_text().replace(
        "ghcr.io/umt/umt-migrations:0.1.0", IMAGE)
    kubectl(env, "apply", "-f", "-", input=manifest)
    kubectl(env, "create", "namespace", NS)
    kubectl(env, "-n", NS, "apply", "-f", "-", input=POSTGRES)
    kubectl(env, "-n", NS, "rollout", "status", "deploy/postgres", "--timeout=180s")
    kubectl(env, "-n", "umt-system", "rollout", "status", "deploy/umt-schema-operator",
            "--timeout=180s")


POSTGRES = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          env:
            - {name: POSTGRES_PASSWORD, value: e2e-Secret-pw}
          readinessProbe:
            exec: {command: [pg_isready, -U, postgres]}
---
apiVersion: v1
kind: Service
metadata: {name: postgres}
spec:
  selector: {app: postgres}
  ports: [{port: 5432}]
"""


def database(env: dict, name: str) -> str:
    """A fresh database and a Secret ``name`` holding its URL."""
    kubectl(env, "-n", NS, "exec", "deploy/postgres", "--", "psql", "-U", "postgres", "-c",
            f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres:e2e-Secret-pw@postgres.{NS}:5432/{name}"
    kubectl(env, "-n", NS, "create", "secret", "generic", name, f"--from-literal=url={url}")
    return url


def smig(name: str, secret: str, **spec: object) -> str:
    body = {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "metadata": {"name": name},
            "spec": {"targetRevision": "head", "image": IMAGE,
                     "database": {"urlSecretRef": {"name": secret}}, **spec}}
    return json.dumps(body)


def status(env: dict, name: str) -> dict:
    return json.loads(kubectl(env, "-n", NS, "get", "smig", name, "-o", "json").stdout)["status"]


def wait(env: dict, name: str, condition: str, timeout: int = 300) -> dict:
    kubectl(env, "-n", NS, "wait", f"--for=condition={condition}", f"smig/{name}",
            f"--timeout={timeout}s", timeout=timeout + 30)
    return status(env, name)


def test_create_to_ready_then_downgrade_refused_and_allowed(cluster: dict) -> None:
    database(cluster, "app1")
    kubectl(cluster, "-n", NS, "apply", "-f", "-", input=smig("app1", "app1"))
    ready = wait(cluster, "app1", "Ready")
    assert ready["currentRevision"] == HEAD and ready["phase"] == "Succeeded"
    table = kubectl(cluster, "-n", NS, "get", "smig", "app1").stdout
    assert "True" in table and HEAD in table

    kubectl(cluster, "-n", NS, "patch", "smig", "app1", "--type=merge",
            "-p", json.dumps({"spec": {"targetRevision": FIRST}}))
    stalled = wait(cluster, "app1", "Stalled")
    assert [c["reason"] for c in stalled["conditions"] if c["type"] == "Stalled"] == \
        ["DowngradeNotAllowed"]
    kubectl(cluster, "-n", NS, "patch", "smig", "app1", "--type=merge",
            "-p", json.dumps({"spec": {"allowDowngrade": True}}))
    assert wait(cluster, "app1", "Ready")["currentRevision"] == FIRST


def test_the_apiserver_rejects_bad_specs_with_readable_messages(cluster: dict) -> None:
    bad = kubectl(cluster, "-n", NS, "apply", "-f", "-", check=False,
                  input=smig("bad", "x", targetRevision="+1"))
    assert bad.returncode != 0 and "relative" in bad.stderr
    empty = kubectl(cluster, "-n", NS, "apply", "-f", "-", check=False,
                    input=smig("bad", "", targetRevision="head"))
    assert empty.returncode != 0
    explain = kubectl(cluster, "explain", "schemamigration.spec.targetRevision").stdout
    assert "revision" in explain.lower()


def test_missing_secret_is_reported(cluster: dict) -> None:
    kubectl(cluster, "-n", NS, "apply", "-f", "-", input=smig("nosecret", "does-not-exist"))
    stalled = wait(cluster, "nosecret", "Stalled", timeout=180)
    assert "does-not-exist" in stalled["message"]


def test_deletion_never_hangs_and_leaves_the_job(cluster: dict) -> None:
    database(cluster, "app2")
    kubectl(cluster, "-n", NS, "apply", "-f", "-", input=smig("app2", "app2"))
    deadline = time.monotonic() + 120
    while not status_or_none(cluster, "app2").get("jobName"):
        assert time.monotonic() < deadline, "no Job was created"
        time.sleep(1)
    job = status(cluster, "app2")["jobName"]
    kubectl(cluster, "-n", NS, "delete", "smig", "app2", "--timeout=30s")
    kubectl(cluster, "-n", NS, "wait", "--for=condition=Complete", f"job/{job}",
            "--timeout=300s", timeout=330)


def status_or_none(env: dict, name: str) -> dict:
    got = kubectl(env, "-n", NS, "get", "smig", name, "-o", "json", check=False)
    return json.loads(got.stdout).get("status", {}) if got.returncode == 0 else {}


def test_two_resources_on_one_database(cluster: dict) -> None:
    database(cluster, "shared")
    for name in ("shared-a", "shared-b"):
        kubectl(cluster, "-n", NS, "apply", "-f", "-", input=smig(name, "shared"))
    assert wait(cluster, "shared-a", "Ready")["currentRevision"] == HEAD
    assert wait(cluster, "shared-b", "Ready")["currentRevision"] == HEAD


def test_the_operator_cannot_read_secrets(cluster: dict) -> None:
    who = "system:serviceaccount:umt-system:umt-schema-operator"
    assert kubectl(cluster, "auth", "can-i", "get", "secrets", "-n", NS, f"--as={who}",
                   check=False).stdout.strip() == "no"
    assert kubectl(cluster, "auth", "can-i", "create", "jobs", "-n", NS, f"--as={who}",
                   check=False).stdout.strip() == "yes"
