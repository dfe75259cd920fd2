"""``umt-migrations approve``, the pure part: which plan waits, and how it is shown."""

from __future__ import annotations

from typing import Any

import pytest

from umt_migrations.approve import describe_plan, pending_plan

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "7a" * 32


def obj(*, generation: int = 4, observed: int = 4, plan_generation: int = 4,
        approval: str = "Pending", reason: str = "ApprovalPending") -> dict[str, Any]:
    return {"metadata": {"generation": generation, "resourceVersion": "9"},
            "status": {"observedGeneration": observed,
                       "plan": {"generation": plan_generation, "digest": DIGEST,
                                "approval": approval, "direction": "upgrade",
                                "from": "3ab691d3a566", "to": "240cfb931a0a",
                                "steps": [{"revision": "240cfb931a0a",
                                           "findings": {"error": 0, "warning": 1}}],
                                "findings": {"error": 0, "warning": 1, "accepted": 3}},
                       "conditions": [{"type": "Ready", "status": "False", "reason": reason,
                                       "observedGeneration": observed}]}}


def test_the_waiting_plan() -> None:
    plan, why = pending_plan(obj())
    assert plan is not None and plan["digest"] == DIGEST
    assert why == ""


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"observed": 3}, "has not planned generation 4"),
    ({"plan_generation": 3}, "generation 4 has no plan"),
    ({"approval": "Approved", "reason": "Migrating"}, "no plan waits for approval"),
    ({"approval": "NotRequired", "reason": "Succeeded"}, "is NotRequired"),
])
def test_nothing_waits(kwargs: dict[str, Any], words: str) -> None:
    plan, why = pending_plan(obj(**kwargs))
    assert plan is None
    assert words in why


def test_no_status_at_all() -> None:
    plan, why = pending_plan({"metadata": {"generation": 1}})
    assert plan is None and "has not planned" in why


def test_describe_with_the_full_plan() -> None:
    plan, _ = pending_plan(obj())
    assert plan is not None
    full = {"steps": [{"revision": "240cfb931a0a", "description": "move prefs",
                       "sql": "ALTER TABLE users DROP COLUMN theme;",
                       "findings": [{"rule": "ban-drop-column", "severity": "error",
                                     "message": "drops a column", "accepted": True,
                                     "reason": "moved in 3ab691d3a566"},
                                    {"rule": "x", "severity": "warning", "message": "w",
                                     "accepted": False}]}]}
    text = describe_plan(plan, full)
    assert text.startswith(f"plan {DIGEST}: upgrade 3ab691d3a566 -> 240cfb931a0a, 1 step(s)")
    assert "   ALTER TABLE users DROP COLUMN theme;" in text
    assert "accepted error ban-drop-column: drops a column [accepted: moved in 3ab691d3a566]" \
        in text
    assert "   warning x: w" in text


def test_describe_without_the_config_map() -> None:
    plan, _ = pending_plan(obj())
    assert plan is not None
    text = describe_plan(plan, None, "ConfigMap s-plan: forbidden (403 Forbidden)")
    assert "(SQL not shown: ConfigMap s-plan: forbidden" in text
    assert "== 240cfb931a0a" in text


def test_choose_prints_then_picks_the_waiting_digest() -> None:
    from umt_migrations.approve import choose

    said: list[str] = []
    digest, line = choose(obj(), None, "no ConfigMap", wanted=None, say=said.append)
    assert digest == DIGEST
    assert said and said[0].startswith(f"plan {DIGEST}")
    assert (digest, line) == (DIGEST, f"approved plan {DIGEST} (spec.review.approvedPlanDigest)")


def test_choose_refuses_another_digest_and_nothing_pending() -> None:
    from umt_migrations.approve import choose

    other = "sha256:" + "00" * 32
    digest, line = choose(obj(), None, None, wanted=other, say=lambda _text: None)
    assert digest is None
    assert f"not {other}" in line
    said: list[str] = []
    digest, line = choose(obj(approval="Approved", reason="Succeeded"), None, None,
                          wanted=None, say=said.append)
    assert digest is None and said == []
    assert line.endswith("nothing approved")
