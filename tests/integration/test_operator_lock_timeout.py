"""A migration blocked by a long transaction, end to end: the real operator (kopf) against the
API emulator, the fake kubelet running the real runner against a real PostgreSQL, and the
waiter (``umt-migrations apply``) as a real process.

A test session holds ACCESS SHARE on table ``hot``; the SchemaMigration's revision alters it.
Each pod gives up after its tries (``spec.safety``), the Job retries the pod, and the resource
says so (``Reconciling``, reason ``LockTimeout``, the attempt, the blocking pid) until the Job
gives up: ``Stalled``/``LockTimeout`` with the blocker, which the waiter prints and exits 3 on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_busy_database import ALTER, blocker, hot_project, session_pid
from tests.integration.test_waiter import (
    REF,
    finish,
    manifest,
    operator,  # noqa: F401  (fixture: the real operator)
    start_waiter,
)
from tests.k8s.emulator import SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    NS,
    add_secret,
    db_revision,
    jobs_of,
)

pytestmark = pytest.mark.integration

IMAGE = "registry.example/busy:1"
NAME = "umt-schema"


@pytest.fixture
def project(tmp_path: Path, pg_url: str) -> Path:
    """The hot-table project, with the database already at the revision before the ALTER."""
    import subprocess

    ini = hot_project(tmp_path / "busy", pg_url)
    subprocess.run([sys.executable, "-m", "umt_migrations", "migrate", "--config", str(ini),
                    "--url", pg_url, "--to", "c00000000001", "--report", str(tmp_path / "r")],
                   check=True, capture_output=True, cwd=ini.parent)
    return ini.parent


@pytest.fixture
def kubelet_options(project: Path) -> dict[str, Any]:
    return {"command_map": {"umt-migrations": [sys.executable, "-m", "umt_migrations"]},
            "cwd": str(REPO_ROOT), "image_path_map": {IMAGE: {"/app": project}}}


def statuses(emulator: Emulator) -> list[dict[str, Any]]:
    return [dict(v.get("status") or {}) for v in emulator.history(SCHEMA_MIGRATIONS, NS, NAME)]


def reasons_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}


@pytest.mark.usefixtures("operator")
def test_blocked_migration_shows_attempts_then_stalls_lock_timeout(
    emulator: Emulator, kubelet: FakeKubelet, pg_url: str,
) -> None:
    add_secret(emulator, pg_url)
    body = manifest(image=IMAGE, job={"backoffLimit": 1},
                    safety={"stepLockTimeoutMilliseconds": 300, "lockRetries": 1})
    with blocker(pg_url) as session:
        pid = session_pid(session)
        session.exec_driver_sql("SELECT * FROM hot").fetchall()  # what pg_stat_activity shows
        proc = start_waiter(emulator, body)
        code, out, err = finish(proc)
        assert code == 3, out + err

    # The Job tried two pods (backoffLimit 1), each with two tries of the ALTER (lockRetries 1).
    (job,) = jobs_of(emulator, NAME)
    job_name = job["metadata"]["name"]
    assert len(kubelet.runs_for(job_name)) == 2
    assert all(run.exit_code == 1 for run in kubelet.runs_for(job_name))
    assert db_revision(pg_url) == "c00000000001"  # the revision before the ALTER committed

    # While the Job retried: Reconciling, reason LockTimeout, the attempt and the blocker.
    retrying = [s for s in statuses(emulator)
                if reasons_of(s).get("Reconciling") == ("True", "LockTimeout")]
    assert retrying, [s.get("message") for s in statuses(emulator)]
    blocked_by = f"revision {ALTER} could not get its locks in 2 tries, blocked by pid {pid} ("
    assert any(s["message"].startswith(f"Job {job_name}: attempt 2 is ")
               and f"; attempt 1 ended with LockTimeout: {blocked_by}" in s["message"]
               for s in retrying), retrying
    assert all(blocked_by in s["message"] and "SELECT * FROM hot" in s["message"]
               for s in retrying)

    # Once the Job gave up: Stalled, reason LockTimeout, the blocker and what to do.
    final = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)["status"]
    assert reasons_of(final) == {"Ready": ("False", "LockTimeout"),
                                 "Reconciling": ("False", "LockTimeout"),
                                 "Stalled": ("True", "LockTimeout")}
    assert final["message"].startswith(f"LockTimeout: {blocked_by}")
    assert "(last of 2 pod attempts); the database stays at c00000000001" in final["message"]
    assert final["message"].endswith(f"(Job {job_name}: BackoffLimitExceeded)")

    # The waiter printed the retrying line as it came, and the reason and blocker at the end.
    assert f"attempt 1 ended with LockTimeout: {blocked_by}" in out
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {REF} is Stalled (generation 1): LockTimeout: {blocked_by}")
