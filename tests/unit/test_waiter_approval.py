"""The waiter and a plan waiting for approval (spec.review): its own exit code and the digest."""

from __future__ import annotations

from typing import Any

import pytest

from umt_migrations.waiter import Tracker, WaitExit, read_status

pytestmark = pytest.mark.unit

REF = "shop/umt-schema"
DIGEST = "sha256:" + "5e" * 32


def pending(generation: int = 3, plan_generation: int = 3,
            condition_generation: int = 3) -> dict[str, Any]:
    conditions = [
        {"type": t, "status": "False", "observedGeneration": condition_generation,
         "reason": "ApprovalPending"} for t in ("Ready", "Reconciling", "Stalled")]
    return {"metadata": {"generation": generation}, "spec": {"targetRevision": "head"},
            "status": {"observedGeneration": condition_generation, "phase": "Pending",
                       "message": f"ApprovalPending: plan {DIGEST} waits for approval",
                       "plan": {"generation": plan_generation, "digest": DIGEST},
                       "conditions": conditions}}


def test_pending_for_the_generation_exits_6_with_the_digest_and_the_set() -> None:
    tracker = Tracker(REF, 3, started=0.0,
                      approve_set_key="schema-migration.review.approvedPlanDigest")
    tracker.observe("MODIFIED", pending())
    assert tracker.outcome is not None
    assert tracker.outcome.code == WaitExit.APPROVAL_PENDING
    assert int(WaitExit.APPROVAL_PENDING) == 6
    line = tracker.outcome.line
    assert f"plan {DIGEST}" in line
    assert f"--set schema-migration.review.approvedPlanDigest={DIGEST}" in line
    assert "umt-migrations approve umt-schema -n shop" in line


def test_pending_of_an_older_generation_counts_for_nothing() -> None:
    snap = read_status(pending(generation=4, condition_generation=3), 4)
    assert not snap.pending
    assert snap.digest is None
    tracker = Tracker(REF, 4, started=0.0)
    tracker.observe("MODIFIED", pending(generation=4, condition_generation=3))
    assert tracker.outcome is None


def test_ready_false_for_another_reason_is_not_pending() -> None:
    obj = pending()
    for cond in obj["status"]["conditions"]:
        cond["reason"] = "Planning"
    assert not read_status(obj, 3).pending


def test_the_default_set_key_is_the_charts() -> None:
    tracker = Tracker(REF, 3, started=0.0)
    tracker.observe("MODIFIED", pending())
    assert tracker.outcome is not None
    assert f"--set review.approvedPlanDigest={DIGEST}" in tracker.outcome.line
