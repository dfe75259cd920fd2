"""A new generation runs a Job only when something its result depends on changed.

The real operator (kopf, in-process) against the API emulator, the fake kubelet running the
real runner against a real PostgreSQL database: a generation that changes only what cannot
change the result (a pod annotation, as ``schema-migration``'s ``rerunOnUpgrade`` writes) is
Ready at once without a Job; a new ``spec.rerunToken`` (or target, or image) runs one; and
after a failed run the next generation always runs one, even with the inputs of an earlier
success (the failed run may have moved the database).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.k8s.emulator import SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    NS,
    REVISION_IDS,
    add_migration,
    add_secret,
    condition,
    db_revision,
    jobs_of,
    two_releases,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kubelet runs two "images" (two releases of this repository)."""
    return two_releases(tmp_path_factory)

NAME = "umt-schema"
TIMEOUT = 60


def settled(emulator: Emulator, generation: int) -> dict[str, Any]:
    """The resource once Ready or Stalled for ``generation``."""
    def check() -> dict[str, Any] | None:
        obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
        for type_ in ("Ready", "Stalled"):
            cond = condition(obj, type_)
            if cond.get("status") == "True" and cond.get("observedGeneration") == generation:
                return obj
        return None

    return emulator.wait_for(check, timeout=TIMEOUT, message=f"generation {generation} settled")


def change(emulator: Emulator, spec: dict[str, Any]) -> int:
    obj = emulator.patch(SCHEMA_MIGRATIONS, NS, NAME, {"spec": spec})
    return int(obj["metadata"]["generation"])


@pytest.mark.usefixtures("operator")
def test_same_inputs_need_no_job_a_new_token_runs_one(
    emulator: Emulator, kubelet: FakeKubelet, pg_url: str,
) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, NAME)
    first = settled(emulator, 1)
    assert condition(first, "Ready")["reason"] == "Succeeded"
    job_1 = first["status"]["jobName"]
    assert first["status"]["lastSuccess"]["generation"] == 1
    assert first["status"]["lastSuccess"]["jobName"] == job_1
    assert first["status"]["lastSuccess"]["inputs"].startswith("sha256:")

    # A Helm release that changes a pod annotation only: a new generation, no Job.
    generation = change(emulator, {"job": {"podAnnotations": {
        "migrations.umt.dev/helm-revision": "2"}}})
    assert generation == 2
    second = settled(emulator, 2)
    ready = condition(second, "Ready")
    assert (ready["reason"], ready["observedGeneration"]) == ("InputsUnchanged", 2)
    assert second["status"]["message"] == (
        f"no Job run: nothing the migration depends on changed since generation 1 migrated "
        f"the database to {HEAD} (Job {job_1}); set spec.rerunToken to a new value to run it "
        "again")
    assert condition(second, "Reconciling")["status"] == "False"
    assert "jobName" not in second["status"]
    assert second["status"]["lastSuccess"] == first["status"]["lastSuccess"]
    assert len(jobs_of(emulator, NAME)) == 1 and kubelet.processes_started == 1

    # The database moved behind the operator's back (a manual downgrade); a new token brings
    # it back.
    subprocess.run([sys.executable, "-m", "umt_migrations", "downgrade", REVISION_IDS[-2],
                    "--url", pg_url], check=True, capture_output=True, cwd=REPO_ROOT)
    assert db_revision(pg_url) == REVISION_IDS[-2]
    generation = change(emulator, {"rerunToken": "restored-2025-03-01"})
    third = settled(emulator, generation)
    assert condition(third, "Ready")["reason"] == "Succeeded"
    assert len(jobs_of(emulator, NAME)) == 2 and kubelet.processes_started == 2
    assert db_revision(pg_url) == HEAD
    assert third["status"]["lastSuccess"]["generation"] == generation

    # A failed run clears lastSuccess: going back to inputs that once succeeded runs a Job.
    failing = change(emulator, {"targetRevision": "0123456789ab"})
    assert condition(settled(emulator, failing), "Stalled")["reason"] == "RevisionNotFound"
    assert "lastSuccess" not in emulator.get(SCHEMA_MIGRATIONS, NS, NAME)["status"]
    back = change(emulator, {"targetRevision": "head"})
    fourth = settled(emulator, back)
    assert condition(fourth, "Ready")["reason"] == "Succeeded"
    assert len(jobs_of(emulator, NAME)) == 4
    assert db_revision(pg_url) == HEAD


@pytest.mark.usefixtures("operator")
def test_the_waiter_of_a_release_that_changes_nothing_needs_no_job(
    emulator: Emulator, kubelet: FakeKubelet, pg_url: str,
) -> None:
    """The hook's path with ``rerunOnUpgrade: true``: each release applies the Helm revision as
    a pod annotation (a new generation); the second one is Ready without a Job."""
    from tests.integration.test_waiter import REF, manifest, run_waiter

    add_secret(emulator, pg_url)
    for revision, jobs in (("1", 1), ("2", 1)):
        body = manifest(job={"podAnnotations": {"migrations.umt.dev/helm-revision": revision}})
        code, out, err = run_waiter(emulator, body)
        assert code == 0, out + err
        assert out.splitlines()[-1] == f"{REF} is Ready (generation {revision}) at {HEAD}"
        assert len(jobs_of(emulator, NAME)) == jobs and kubelet.processes_started == 1
    assert "no Job run: nothing the migration depends on changed since generation 1" in out
