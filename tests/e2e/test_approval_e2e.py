"""Review on a real cluster: a plan waiting for approval, then approved, with the real plan and
migration Job pods (the image's `umt-migrations plan` and `migrate --plan-digest`), the
chart's RBAC for the plan's ConfigMap and pod log, and `umt-migrations approve`.

Named to run before test_operator_e2e.py, whose last scenario uninstalls the operator.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.cluster import eventually, skip_reason
from tests.e2e.conftest import RELEASE, Installation
from tests.e2e.test_operator_e2e import (
    HEAD,
    add_migration,
    condition,
    fresh_database,
    jobs_of,
    smig,
    wait_for,
)

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
              pytest.mark.timeout(900)]

KIND_LABEL = "migrations.umt.dev/job-kind"


def pending(op: Installation, name: str, generation: int) -> dict:
    def probe() -> dict | None:
        obj = smig(op, name)
        ready = condition(obj, "Ready")
        if ready.get("reason") == "ApprovalPending" and \
                ready.get("observedGeneration") == generation:
            return obj
        return None
    found: dict = eventually(probe, 300, f"{name} waiting for approval")
    return found


def test_pending_then_approved(operator: Installation) -> None:
    account = f"system:serviceaccount:{operator.system}:{RELEASE}"
    for verb, resource in (("get", "pods/log"), ("create", "configmaps"),
                           ("patch", "configmaps")):
        allowed = operator.cluster.kubectl("auth", "can-i", verb, resource, "-n", operator.apps,
                                           f"--as={account}", check=False).stdout.strip()
        assert allowed == "yes", (verb, resource)
    database = fresh_database(operator, "review1")
    add_migration(operator, "review1", "review1", review={"approval": "Always"})
    obj = pending(operator, "review1", generation=1)
    plan = obj["status"]["plan"]
    assert plan["digest"].startswith("sha256:") and plan["to"] == HEAD
    assert condition(obj, "Stalled").get("status") == "False"
    assert condition(obj, "Reconciling").get("status") == "False"
    kinds = [j["metadata"]["labels"].get(KIND_LABEL) for j in jobs_of(operator, "review1")]
    assert kinds == ["plan"]  # no migration Job while it waits
    assert operator.databases.tables(database) == set()
    config_map = operator.cluster.get("configmap", plan["sqlConfigMap"], "-n", operator.apps)
    assert config_map is not None and plan["digest"] in config_map["data"]["plan.json"]

    approve = subprocess.run(
        [sys.executable, "-m", "umt_migrations", "approve", "review1", "-n", operator.apps],
        capture_output=True, text=True, env={**operator.cluster.env, "PATH": "/usr/bin:/bin"},
        timeout=120, check=False)
    assert approve.returncode == 0, approve.stderr
    assert f"approved plan {plan['digest']}" in approve.stdout
    obj = wait_for(operator, "review1", "Ready", "Succeeded")
    assert obj["status"]["plan"]["approval"] == "Approved"
    assert obj["status"]["currentRevision"] == HEAD == operator.databases.revision(database)
    migration = [j for j in jobs_of(operator, "review1")
                 if KIND_LABEL not in j["metadata"]["labels"]]
    (job,) = migration
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == \
        ["--plan-digest", plan["digest"]]
