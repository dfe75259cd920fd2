"""Review in the cluster, end to end: the operator with spec.review against the API emulator,
the plan, migration and drift Jobs run by the fake kubelet as real ``umt-migrations``
processes on a real PostgreSQL database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.alembic_projects import Rev, linear_chain, make_project
from tests.integration.test_migrate_runner import log_rows, run_migrate
from tests.k8s.emulator import CONFIGMAPS, SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    NS,
    TIMEOUT,
    Operator,
    add_migration,
    add_secret,
    condition,
    db_revision,
    jobs_of,
    two_releases,
    wait_condition,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kubelet runs two "images" (two releases of this repository)."""
    return two_releases(tmp_path_factory)

NAME = "umt-schema"
KIND_LABEL = "migrations.umt.dev/job-kind"


def project(tmp_path: Path) -> tuple[Path, list[Rev]]:
    """Two steps after the log table; the second drops the first one's table (an error for
    lint: ban-drop-table, not accepted)."""
    revs = linear_chain(2)
    revs[2].upgrade_sql.append(f"DROP TABLE t_{revs[1].id}")
    return make_project(tmp_path / "project", revs), revs


def migration_jobs(emulator: Emulator) -> list[dict[str, Any]]:
    return [j for j in jobs_of(emulator, NAME) if KIND_LABEL not in j["metadata"]["labels"]]


def kind_jobs(emulator: Emulator, kind: str) -> list[dict[str, Any]]:
    return [j for j in jobs_of(emulator, NAME) if j["metadata"]["labels"].get(KIND_LABEL) == kind]


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def wait_ready_false(emulator: Emulator, reason: str, generation: int) -> dict[str, Any]:
    """Wait until Ready is False with ``reason`` for ``generation``."""
    def check() -> dict[str, Any] | None:
        obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
        ready = condition(obj, "Ready")
        if ready.get("status") == "False" and ready.get("reason") == reason \
                and ready.get("observedGeneration") == generation:
            return obj
        return None
    return emulator.wait_for(check, timeout=TIMEOUT, message=f"Ready False {reason}")


def args_of(job: dict[str, Any]) -> list[str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def test_block_stalls_with_lint_failed_and_runs_nothing(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        tmp_path: Path) -> None:
    ini, revs = project(tmp_path)
    add_secret(emulator, pg_url)
    add_migration(emulator, alembic={"config": str(ini)}, review={"lint": "Block"})
    obj = wait_condition(emulator, NAME, "Stalled", "LintFailed")
    status = obj["status"]
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Reconciling")["status"] == "False"
    assert f"{revs[2].id}: ban-drop-table:" in status["message"]
    assert status["plan"]["findings"]["error"] >= 1
    assert [s["revision"] for s in status["plan"]["steps"]] == [r.id for r in revs]
    assert status["plan"]["digest"].startswith("sha256:")
    assert migration_jobs(emulator) == [] and len(kind_jobs(emulator, "plan")) == 1
    assert tables(pg_url) == set()  # the plan only read the database
    # the full plan, SQL and findings, in a ConfigMap owned by the resource
    config_map = emulator.get(CONFIGMAPS, NS, status["plan"]["sqlConfigMap"])
    assert config_map is not None
    (owner,) = config_map["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("SchemaMigration", obj["metadata"]["uid"])
    plan = json.loads(config_map["data"]["plan.json"])
    assert plan["digest"] == status["plan"]["digest"]
    assert f"DROP TABLE t_{revs[1].id}" in plan["steps"][2]["sql"]
    assert "postgres@" not in json.dumps(config_map) + json.dumps(obj)


def test_on_findings_waits_for_approval_then_runs_the_approved_plan(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        tmp_path: Path) -> None:
    ini, revs = project(tmp_path)
    add_secret(emulator, pg_url)
    add_migration(emulator, alembic={"config": str(ini)}, review={"approval": "OnFindings"})
    obj = wait_ready_false(emulator, "ApprovalPending", generation=1)
    assert condition(obj, "Reconciling")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"
    digest = obj["status"]["plan"]["digest"]
    assert obj["status"]["plan"]["approval"] == "Pending"
    assert digest in obj["status"]["message"]
    assert f"umt-migrations approve {NAME} -n {NS}" in obj["status"]["message"]
    assert migration_jobs(emulator) == [] and tables(pg_url) == set()  # untouched

    approve = subprocess.run(
        [sys.executable, "-m", "umt_migrations", "approve", NAME, "-n", NS],
        capture_output=True, text=True, env=emulator.kubectl_env(), timeout=60)
    assert approve.returncode == 0, approve.stderr
    assert f"plan {digest}" in approve.stdout
    assert f"DROP TABLE t_{revs[1].id}" in approve.stdout
    assert f"approved plan {digest}" in approve.stdout

    obj = wait_condition(emulator, NAME, "Ready", "Succeeded", generation=2)
    assert obj["spec"]["review"]["approvedPlanDigest"] == digest
    assert obj["status"]["plan"]["digest"] == digest  # planned again: the same plan
    assert obj["status"]["plan"]["approval"] == "Approved"
    assert db_revision(pg_url) == revs[2].id
    (job,) = migration_jobs(emulator)
    assert args_of(job)[-2:] == ["--plan-digest", digest]
    # nothing waits any more: approve refuses
    again = subprocess.run(
        [sys.executable, "-m", "umt_migrations", "approve", NAME, "-n", NS],
        capture_output=True, text=True, env=emulator.kubectl_env(), timeout=60)
    assert again.returncode == 3 and "nothing approved" in again.stderr


def test_a_new_target_needs_a_new_approval(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        tmp_path: Path, kubectl: Any) -> None:
    ini, revs = project(tmp_path)
    add_secret(emulator, pg_url)
    add_migration(emulator, targetRevision=revs[1].id, alembic={"config": str(ini)},
                  review={"approval": "Always"})
    first = wait_ready_false(emulator, "ApprovalPending", generation=1)["status"]["plan"]
    patch = {"spec": {"review": {"approvedPlanDigest": first["digest"]}}}
    kubectl("patch", "smig", NAME, "--type=merge", "-p", json.dumps(patch))
    wait_condition(emulator, NAME, "Ready", "Succeeded", generation=2)
    assert db_revision(pg_url) == revs[1].id

    kubectl("patch", "smig", NAME, "--type=merge", "-p",
            json.dumps({"spec": {"targetRevision": revs[2].id}}))
    obj = wait_ready_false(emulator, "ApprovalPending", generation=3)
    second = obj["status"]["plan"]
    assert second["digest"] != first["digest"]
    assert (second["from"], second["to"]) == (revs[1].id, revs[2].id)
    assert "approvedPlanDigest is for another plan" in obj["status"]["message"]
    assert db_revision(pg_url) == revs[1].id and len(migration_jobs(emulator)) == 1


def test_database_moved_after_the_plan_is_plan_changed(
        emulator: Emulator, operator: Operator, kubelet: FakeKubelet, pg_url: str,
        tmp_path: Path) -> None:
    ini, revs = project(tmp_path)
    add_secret(emulator, pg_url)
    with kubelet.held(f"{NAME}-1-*"):  # the migration Job's pod waits; the plan Job's runs
        add_migration(emulator, alembic={"config": str(ini)}, review={})
        emulator.wait_for(lambda: migration_jobs(emulator), timeout=TIMEOUT,
                          message="the migration Job")
        planned = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)["status"]["plan"]
        assert planned.get("from") is None and planned["approval"] == "NotRequired"
        code, _report, _out, stderr = run_migrate(ini, pg_url, "--to", revs[1].id)
        assert code == 0, stderr  # someone moved the database meanwhile
    obj = wait_condition(emulator, NAME, "Stalled", "PlanChanged")
    assert planned["digest"] in obj["status"]["message"]
    assert db_revision(pg_url) == revs[1].id  # nothing applied by the Job
    assert log_rows(pg_url) == [(revs[0].id, "up"), (revs[1].id, "up")]


@pytest.mark.parametrize("on_drift", ["Report", "Fail"])
def test_a_manual_column_is_drift(emulator: Emulator, operator: Operator, kubelet: FakeKubelet,
                                  pg_url: str, on_drift: str) -> None:
    add_secret(emulator, pg_url)
    with kubelet.held(f"{NAME}-drift-*"):
        add_migration(emulator, review={"drift": "AfterMigration", "onDrift": on_drift})
        wait_condition(emulator, NAME, "Ready", "Succeeded")
        engine = sa.create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE users ADD COLUMN x INTEGER"))
        engine.dispose()
        emulator.wait_for(lambda: kind_jobs(emulator, "drift"), timeout=TIMEOUT,
                          message="the drift Job")
    obj = wait_condition(emulator, NAME, "Drifted", "Drifted")
    drifted = condition(obj, "Drifted")
    assert "column users.x" in drifted["message"]
    assert obj["status"]["drift"]["extra"] == ["column users.x"]
    assert len(kind_jobs(emulator, "drift")) == 1
    if on_drift == "Report":  # Ready is left alone
        assert condition(obj, "Ready")["status"] == "True"
        return
    obj = wait_condition(emulator, NAME, "Stalled", "Drifted")
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == \
        ("False", "Drifted")
    assert "column users.x" in obj["status"]["message"]
