"""`helm install` and `helm upgrade` of charts/umt on a real cluster: the migration runs in the
pre-upgrade hook, a failed one fails the upgrade with its message, the app waits for its schema.

Opt-in, on any cluster, configured like the rest of tests/e2e:

- ``UMT_E2E_KUBECONFIG``: a kubeconfig with rights to install the operator chart;
- ``UMT_E2E_IMAGE``: the image built from this tree (``repository:tag``), already on the nodes;
- ``UMT_E2E_DATABASE_URL``: a PostgreSQL or MariaDB URL reachable from pods; each test uses a
  fresh database on that server (the URL's database name is replaced);
- ``UMT_E2E_ADMIN_URL``: the same server as reachable from this machine, with the right to
  create databases (the tests' own checks).

The operator is installed first from charts/umt-migrations-operator (watching only the test
namespace), into a namespace that enforces the "restricted" Pod Security Standard, so every pod
the charts render is checked by a real API server. Uses the real `helm` (4.x) and `kubectl`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.k8s.fixtures import helm_binary, kubectl_binary  # noqa: F401  (fixtures)
from umt_migrations.urls import normalize_url, password_of, scrub

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = ("UMT_E2E_KUBECONFIG", "UMT_E2E_IMAGE", "UMT_E2E_DATABASE_URL", "UMT_E2E_ADMIN_URL")
MISSING = [name for name in VARIABLES if not os.environ.get(name)]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(MISSING), reason="opt-in e2e on a real cluster: set "
                       + ", ".join(MISSING) + " (tests/e2e/test_helm_gitops.py says how)"),
]

SCRIPTS = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
HEAD = SCRIPTS.get_current_head()
FIRST = next(rev.revision for rev in SCRIPTS.walk_revisions() if rev.down_revision is None)
#: The revision after FIRST creates this table: creating it beforehand makes that step fail.
SECOND = next(rev for rev in SCRIPTS.walk_revisions() if rev.down_revision == FIRST)
SABOTAGE_TABLE = "user_preferences"
HELM_TIMEOUT = "6m"


def run(*args: str, env: dict[str, str], input: str | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows its output (never a password)."""
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **env})
    if check and result.returncode != 0:
        raise AssertionError(scrub(f"{' '.join(args)} failed ({result.returncode}):\n"
                                   f"{result.stdout}\n{result.stderr}"))
    return result


@dataclass
class Cluster:
    helm: str
    kubectl: str
    env: dict[str, str]
    namespace: str
    charts: Path  # a copy of charts/ with charts/umt's dependency built
    image: tuple[str, str]  # repository, tag

    def k(self, *args: str, input: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.kubectl, "-n", self.namespace, *args, env=self.env, input=input,
                   check=check)

    def h(self, *args: str, check: bool = True,
          timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(self.helm, *args, "--namespace", self.namespace, env=self.env, check=check,
                   timeout=timeout)

    def umt(self, verb: str, release: str, target: str, *extra: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """`helm install|upgrade RELEASE charts/umt` with the test image and ``target``."""
        repository, tag = self.image
        return self.h(verb, release, str(self.charts / "umt"),
                      "--set-string", f"global.image.repository={repository}",
                      "--set-string", f"global.image.tag={tag}",
                      "--set", "global.image.pullPolicy=IfNotPresent",
                      "--set", "app.replicas=1",
                      "--set", f"database.urlSecretRef.name={release}-db",
                      "--set", f"schema-migration.database.urlSecretRef.name={release}-db",
                      "--set-string", f"schema-migration.targetRevision={target}",
                      "--timeout", HELM_TIMEOUT, *extra, check=check, timeout=900)

    def get(self, kind: str, name: str) -> dict | None:
        result = self.k("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        return json.loads(result.stdout)


def split_image(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag or "@" in image:
        pytest.fail(f"UMT_E2E_IMAGE must be repository:tag, got {image!r}", pytrace=False)
    return repository, tag


@pytest.fixture(scope="module")
def cluster(helm_binary: Path, kubectl_binary: Path,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {"KUBECONFIG": os.environ["UMT_E2E_KUBECONFIG"]}
    suffix = uuid.uuid4().hex[:6]
    namespace, system = f"umt-helm-{suffix}", f"umt-helm-{suffix}-system"
    charts = tmp_path_factory.mktemp("charts")
    for name in ("umt", "schema-migration", "umt-migrations-operator"):
        shutil.copytree(ROOT / "charts" / name, charts / name,
                        ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    run(str(helm_binary), "dependency", "build", str(charts / "umt"), env=env)
    image = split_image(os.environ["UMT_E2E_IMAGE"])
    found = Cluster(str(helm_binary), str(kubectl_binary), env, namespace, charts, image)
    kubectl = str(kubectl_binary)
    run(kubectl, "create", "namespace", namespace, env=env)
    run(kubectl, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
        env=env)
    crd = run(kubectl, "get", "crd", "schemamigrations.migrations.umt.dev", env=env, check=False)
    operator = f"umt-op-{suffix}"
    try:
        run(str(helm_binary), "install", operator, str(charts / "umt-migrations-operator"),
            "--namespace", system, "--create-namespace",
            "--set-string", f"image.repository={image[0]}", "--set-string", f"image.tag={image[1]}",
            "--set", "image.pullPolicy=IfNotPresent", "--set", f"watchNamespaces={{{namespace}}}",
            # the CRD outlives releases (keep policy): install it only where it is missing
            "--set", f"crds.install={'false' if crd.returncode == 0 else 'true'}",
            "--wait", "--timeout", HELM_TIMEOUT, env=env, timeout=900)
        run(kubectl, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/schemamigrations.migrations.umt.dev", env=env)
        yield found
    finally:
        if not os.environ.get("UMT_E2E_KEEP"):
            for release in ("umt", "umt-fail"):
                run(str(helm_binary), "uninstall", release, "--namespace", namespace,
                    "--wait", env=env, check=False)
            run(str(helm_binary), "uninstall", operator, "--namespace", system, "--wait",
                env=env, check=False)
            run(kubectl, "delete", "namespace", namespace, system, "--wait=false", env=env,
                check=False)


class Database:
    """A fresh database on the e2e server: its URL for pods (in a Secret) and a local engine."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self._admin = sa.create_engine(normalize_url(os.environ["UMT_E2E_ADMIN_URL"]),
                                       isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
        self.engine = sa.create_engine(self._admin.url.set(database=self.name),
                                       isolation_level="AUTOCOMMIT")
        pod_url = sa.make_url(normalize_url(os.environ["UMT_E2E_DATABASE_URL"]))
        self.pod_url = pod_url.set(database=self.name).render_as_string(hide_password=False)

    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def execute(self, sql: str) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql(sql)

    def drop(self) -> None:
        self.engine.dispose()
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}")
        self._admin.dispose()


@pytest.fixture
def database() -> Iterator[Database]:
    db = Database("umt_helm")
    yield db
    db.drop()


def secret_for(cluster: Cluster, release: str, db: Database) -> None:
    """The Secret `<release>-db` with the database URL, sent on stdin (never on a command line)."""
    manifest = json.dumps({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": f"{release}-db"},
                           "stringData": {"url": db.pod_url}})
    cluster.k("apply", "-f", "-", input=manifest)


def schema_migration(cluster: Cluster, release: str) -> dict:
    found = cluster.get("schemamigration", f"{release}-schema")
    assert found is not None, f"no SchemaMigration {release}-schema"
    return found


def ready_for_its_generation(resource: dict) -> bool:
    generation = resource["metadata"]["generation"]
    status = resource.get("status") or {}
    return any(c["type"] == "Ready" and c["status"] == "True"
               and c.get("observedGeneration") == generation
               for c in status.get("conditions") or [])


def deployed_target(cluster: Cluster, release: str) -> str:
    deployment = cluster.get("deployment", release)
    assert deployment is not None
    return deployment["spec"]["template"]["metadata"]["annotations"][
        "migrations.umt.dev/target-revision"]


def test_install_then_upgrade_to_a_new_target(cluster: Cluster, database: Database) -> None:
    secret_for(cluster, "umt", database)

    # install at the first revision: Helm runs the hook and waits for the migration
    installed = cluster.umt("install", "umt", FIRST)
    assert "STATUS: deployed" in installed.stdout
    assert database.revision() == FIRST
    assert ready_for_its_generation(schema_migration(cluster, "umt"))
    # hook-succeeded: no hook object is left behind
    assert cluster.get("job", "umt-schema-migrate") is None
    assert cluster.get("role", "umt-schema-migrate") is None
    # the gate holds the app: its image expects HEAD, the database is at FIRST
    cluster.k("wait", "deployment/umt", "--for=jsonpath={.status.replicas}=1", "--timeout=120s")
    pods = json.loads(cluster.k("get", "pods", "-l", "app.kubernetes.io/instance=umt,"
                                "app.kubernetes.io/name=umt", "-o", "json").stdout)["items"]
    assert pods
    for pod in pods:
        assert pod["status"]["phase"] == "Pending"  # init containers have not all finished
        assert not any(c["type"] == "Ready" and c["status"] == "True"
                       for c in pod["status"].get("conditions") or [])

    # upgrade to head: migrated before the rollout, and the app starts
    upgraded = cluster.umt("upgrade", "umt", "head", "--wait")
    assert "has been upgraded" in upgraded.stdout
    assert database.revision() == HEAD
    resource = schema_migration(cluster, "umt")
    assert ready_for_its_generation(resource)
    assert resource["status"]["currentRevision"] == HEAD
    assert deployed_target(cluster, "umt") == "head"
    cluster.k("rollout", "status", "deployment/umt", "--timeout=120s")
    history = json.loads(cluster.h("history", "umt", "-o", "json").stdout)
    assert [entry["status"] for entry in history] == ["superseded", "deployed"]


def test_a_failing_migration_fails_the_upgrade_with_its_message(cluster: Cluster,
                                                                 database: Database) -> None:
    assert f'"{SABOTAGE_TABLE}"' in Path(SECOND.path).read_text()  # the step that will fail
    secret_for(cluster, "umt-fail", database)
    cluster.umt("install", "umt-fail", FIRST)
    assert database.revision() == FIRST
    database.execute(f"CREATE TABLE {SABOTAGE_TABLE} (id INTEGER)")

    failed = cluster.umt("upgrade", "umt-fail", "head", "--wait", check=False)
    printed = failed.stdout + failed.stderr
    assert failed.returncode != 0, printed
    # Helm 4 printed the failed hook Job's log: the waiter's reason and message
    assert "MigrationFailed" in printed, printed
    assert SABOTAGE_TABLE in printed, printed
    password = password_of(database.pod_url)
    assert not password or password not in printed  # no credentials in what Helm shows
    # nothing rolled out, the database left at its last good revision, the Job kept
    assert deployed_target(cluster, "umt-fail") == FIRST
    assert database.revision() == FIRST
    stalled = schema_migration(cluster, "umt-fail")
    assert any(c["type"] == "Stalled" and c["status"] == "True" and c["reason"] ==
               "MigrationFailed" for c in stalled["status"]["conditions"])
    job = cluster.get("job", "umt-fail-schema-migrate")
    assert job is not None and any(c["type"] == "Failed" and c["status"] == "True"
                                   for c in job["status"].get("conditions") or [])
    history = json.loads(cluster.h("history", "umt-fail", "-o", "json").stdout)
    assert history[-1]["status"] == "failed"

    # fixed: the next upgrade replaces the failed Job (no "already exists") and retries
    database.execute(f"DROP TABLE {SABOTAGE_TABLE}")
    cluster.umt("upgrade", "umt-fail", "head", "--wait")
    assert database.revision() == HEAD
    assert deployed_target(cluster, "umt-fail") == "head"
