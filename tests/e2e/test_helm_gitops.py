"""`helm install` and `helm upgrade` of charts/umt on a real cluster: the migration runs in the
pre-upgrade hook, a failed one fails the upgrade with its message, the app waits for its schema.

Opt-in, like the rest of tests/e2e (see tests/e2e/cluster.py): ``UMT_E2E_KUBECONFIG``,
``UMT_E2E_IMAGE`` (the image built from this tree, on the nodes), ``UMT_E2E_DATABASE_URL`` (as
pods reach the server) and ``UMT_E2E_ADMIN_URL`` (as this machine does) for any cluster, or
``UMT_E2E=1`` with Docker and kind. The suite's ``operator`` fixture (tests/e2e/conftest.py)
installs the operator chart with helm, watching one namespace that enforces the "restricted"
Pod Security Standard: the app charts are installed there, so the real API server checks every
pod they render. Uses the real `helm` (4.x) and `kubectl`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests import charts as tests_charts
from tests.e2e.cluster import ROOT, skip_reason
from tests.e2e.conftest import Installation
from umt_migrations.urls import password_of

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
              pytest.mark.timeout(1800)]

SCRIPTS = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
HEAD = SCRIPTS.get_current_head()
FIRST = next(rev.revision for rev in SCRIPTS.walk_revisions() if rev.down_revision is None)
#: The revision after FIRST creates this table: creating it beforehand makes that step fail.
SECOND = next(rev for rev in SCRIPTS.walk_revisions() if rev.down_revision == FIRST)
SABOTAGE_TABLE = "user_preferences"
HELM_TIMEOUT = "6m"


class App:
    """charts/umt installed with helm into the operator's watched namespace."""

    def __init__(self, operator: Installation, charts: Path, release: str) -> None:
        self.op, self.charts, self.release = operator, charts, release
        self.database, url = operator.databases.create(release.replace("-", "_"))
        # the Secret `<release>-db` holds the URL; sent on stdin, never on a command line, and
        # created, not applied (apply would copy the URL into its last-applied annotation)
        operator.cluster.create({"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": f"{release}-db"},
                                 "stringData": {"url": url}}, operator.apps)
        self.password = password_of(url)
        self.installed = False

    def helm(self, verb: str, target: str, *extra: str,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """`helm install|upgrade RELEASE charts/umt` with the test image and ``target``."""
        self.installed = True
        return self.op.cluster.helm(
            verb, self.release, str(self.charts / "umt"), "--namespace", self.op.apps,
            "--set-string", f"global.image.repository={self.op.target.repository}",
            "--set-string", f"global.image.tag={self.op.target.tag}",
            "--set", "global.image.pullPolicy=IfNotPresent", "--set", "app.replicas=1",
            "--set", f"database.urlSecretRef.name={self.release}-db",
            "--set", f"schema-migration.database.urlSecretRef.name={self.release}-db",
            "--set-string", f"schema-migration.targetRevision={target}",
            "--timeout", HELM_TIMEOUT, *extra, check=check, timeout=900)

    def get(self, kind: str, name: str) -> dict | None:
        return self.op.cluster.get(kind, name, "-n", self.op.apps)

    def revision(self) -> str | None:
        return self.op.databases.revision(self.database)

    def execute(self, sql: str) -> None:
        engine = sa.create_engine(self.op.databases.admin.set(database=self.database),
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
        engine.dispose()

    def schema_migration(self) -> dict:
        found = self.get("schemamigration", f"{self.release}-schema")
        assert found is not None, f"no SchemaMigration {self.release}-schema"
        return found

    def deployed_target(self) -> str:
        deployment = self.get("deployment", self.release)
        assert deployment is not None
        return deployment["metadata"]["annotations"]["migrations.umt.dev/target-revision"]

    def history(self) -> list[dict]:
        return json.loads(self.op.cluster.helm("history", self.release, "--namespace",
                                               self.op.apps, "-o", "json").stdout)

    def uninstall(self) -> None:
        if self.installed:
            self.op.cluster.helm("uninstall", self.release, "--namespace", self.op.apps,
                                 "--wait", check=False)


@pytest.fixture(scope="module")
def charts(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of charts/umt and charts/schema-migration with the dependency built."""
    return tests_charts.umt_chart(helm_binary, tmp_path_factory.mktemp("charts")).parent


@pytest.fixture
def app(operator: Installation, charts: Path, request: pytest.FixtureRequest) -> Iterator[App]:
    installed = App(operator, charts, request.param)
    yield installed
    installed.uninstall()


def ready_for_its_generation(resource: dict) -> bool:
    generation = resource["metadata"]["generation"]
    status = resource.get("status") or {}
    return any(c["type"] == "Ready" and c["status"] == "True"
               and c.get("observedGeneration") == generation
               for c in status.get("conditions") or [])


@pytest.mark.parametrize("app", ["umt"], indirect=True)
def test_install_then_upgrade_to_a_new_target(app: App) -> None:
    # install at the first revision: Helm runs the hook and waits for the migration
    installed = app.helm("install", FIRST)
    assert "STATUS: deployed" in installed.stdout
    assert app.revision() == FIRST
    assert ready_for_its_generation(app.schema_migration())
    # hook-succeeded: no hook object is left behind
    assert app.get("job", "umt-schema-migrate") is None
    assert app.get("role", "umt-schema-migrate") is None
    # the gate holds the app: its image expects HEAD, the database is at FIRST
    app.op.cluster.kubectl("-n", app.op.apps, "wait", "deployment/umt",
                           "--for=jsonpath={.status.replicas}=1", "--timeout=120s")
    pods = app.op.cluster.get("pods", "-n", app.op.apps, "-l",
                              "app.kubernetes.io/instance=umt,app.kubernetes.io/name=umt")
    assert pods["items"]
    for pod in pods["items"]:
        assert pod["status"]["phase"] == "Pending"  # its init container has not finished
        assert not any(c["type"] == "Ready" and c["status"] == "True"
                       for c in pod["status"].get("conditions") or [])

    # upgrade to head: migrated before the rollout, and the app starts
    upgraded = app.helm("upgrade", "head", "--wait")
    assert "has been upgraded" in upgraded.stdout
    assert app.revision() == HEAD
    resource = app.schema_migration()
    assert ready_for_its_generation(resource)
    assert resource["status"]["currentRevision"] == HEAD
    assert app.deployed_target() == "head"
    app.op.cluster.kubectl("-n", app.op.apps, "rollout", "status", "deployment/umt",
                           "--timeout=120s")
    assert [entry["status"] for entry in app.history()] == ["superseded", "deployed"]


@pytest.mark.parametrize("app", ["umt-fail"], indirect=True)
def test_a_failing_migration_fails_the_upgrade_with_its_message(app: App) -> None:
    assert f'"{SABOTAGE_TABLE}"' in Path(SECOND.path).read_text()  # the step that will fail
    app.helm("install", FIRST)
    assert app.revision() == FIRST
    app.execute(f"CREATE TABLE {SABOTAGE_TABLE} (id INTEGER)")

    failed = app.helm("upgrade", "head", "--wait", check=False)
    printed = failed.stdout + failed.stderr
    assert failed.returncode != 0, printed
    # Helm 4 printed the failed hook Job's log: the waiter's reason and message
    assert "MigrationFailed" in printed, printed
    assert SABOTAGE_TABLE in printed, printed
    assert not app.password or app.password not in printed  # no credentials in what Helm shows
    # nothing rolled out, the database left at its last good revision, the Job kept
    assert app.deployed_target() == FIRST
    assert app.revision() == FIRST
    stalled = app.schema_migration()
    assert any(c["type"] == "Stalled" and c["status"] == "True" and c["reason"] ==
               "MigrationFailed" for c in stalled["status"]["conditions"])
    job = app.get("job", "umt-fail-schema-migrate")
    assert job is not None and any(c["type"] == "Failed" and c["status"] == "True"
                                   for c in job["status"].get("conditions") or [])
    assert app.history()[-1]["status"] == "failed"

    # fixed: the next upgrade replaces the failed Job (no "already exists") and retries
    app.execute(f"DROP TABLE {SABOTAGE_TABLE}")
    app.helm("upgrade", "head", "--wait")
    assert app.revision() == HEAD
    assert app.deployed_target() == "head"
