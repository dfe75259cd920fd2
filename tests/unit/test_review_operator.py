"""Review in the cluster, the pure half: spec.review, the decision, status, Jobs, ConfigMap."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from umt_operator import reasons
from umt_operator.jobs import render_job
from umt_operator.review import (
    DriftReport,
    PlanSummary,
    ReviewSpec,
    approve_hint,
    decide,
    drift_status,
    first_unaccepted,
    interval_seconds,
    parse_drift_report,
    parse_plan_summary,
    parse_review,
    plan_status,
    review_status,
)
from umt_operator.review_jobs import (
    ANNOTATION_PLAN_DIGEST,
    ANNOTATION_PLAN_SHA256,
    ANNOTATION_TRUNCATED,
    LABEL_JOB_KIND,
    PLAN_KEY,
    TRUNCATED_SQL,
    job_kind,
    plan_config_map,
    plan_from_log,
    review_job,
    review_job_name,
    termination_message,
    with_plan_digest,
)
from umt_operator.settings import Settings
from umt_operator.spec import InvalidSpec, parse_spec

NOW = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def summary(errors: int = 0, warnings: int = 0, accepted: int = 0, steps: int = 1,
            digest: str = DIGEST) -> PlanSummary:
    counts = {"error": errors, "warning": warnings, "accepted": accepted}
    return PlanSummary(digest=digest, from_revision="3ab691d3a566", to_revision="240cfb931a0a",
                       direction="upgrade" if steps else "none", findings=counts,
                       steps=tuple((f"r{i}", counts) for i in range(steps)))


# --- spec.review ------------------------------------------------------------------------------


def test_no_review_means_none_and_empty_review_means_defaults() -> None:
    assert parse_review({"targetRevision": "head"}) is None
    assert parse_review({"review": {}}) == ReviewSpec(
        lint="Warn", approval="Never", approved_plan_digest=None, drift="Off",
        interval_seconds=3600, on_drift="Report")


def test_every_field_parsed() -> None:
    review = parse_review({"review": {"lint": "Block", "approval": "OnFindings",
                                      "approvedPlanDigest": DIGEST, "drift": "Periodic",
                                      "interval": "1h30m", "onDrift": "Fail"}})
    assert review == ReviewSpec("Block", "OnFindings", DIGEST, "Periodic", 5400, "Fail")


@pytest.mark.parametrize(("review", "words"), [
    ({"lint": "block"}, "review.lint must be one of Off, Warn, Block"),
    ({"approval": "Sometimes"}, "review.approval must be one of Never, OnFindings, Always"),
    ({"approvedPlanDigest": "sha256:ABC"}, "review.approvedPlanDigest must be sha256:"),
    ({"approvedPlanDigest": "ab" * 32}, "review.approvedPlanDigest must be sha256:"),
    ({"drift": "Always"}, "review.drift must be one of Off, AfterMigration, Periodic"),
    ({"interval": "4m59s"}, "review.interval must be a duration"),
    ({"interval": "10 minutes"}, "review.interval must be a duration"),
    ({"onDrift": "Panic"}, "review.onDrift must be one of Report, Fail"),
])
def test_bad_review_fields_are_invalid_spec(review: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidSpec, match=words.replace(".", r"\.")):
        parse_review({"review": review})


def test_intervals() -> None:
    assert interval_seconds("5m") == 300
    assert interval_seconds("1h") == 3600
    assert interval_seconds("2h3m4s") == 7384
    assert interval_seconds("") is None
    assert interval_seconds("5") is None
    assert interval_seconds("m5") is None


# --- the plan summary -------------------------------------------------------------------------


def test_plan_summary_as_plan_writes_it() -> None:
    text = json.dumps({
        "ok": True, "version": 1, "dialect": "postgresql", "from": "3ab691d3a566",
        "to": "240cfb931a0a", "direction": "upgrade", "digest": DIGEST,
        "findings": {"error": 0, "warning": 1, "accepted": 3},
        "steps": [{"revision": "240cfb931a0a",
                   "findings": {"error": 0, "warning": 1, "accepted": 3}}]})
    plan = parse_plan_summary(text)
    assert plan is not None
    assert plan.digest == DIGEST
    assert plan.steps == (("240cfb931a0a", {"error": 0, "warning": 1, "accepted": 3}),)
    assert plan.unaccepted == 1
    assert plan.step_count == 1


@pytest.mark.parametrize("text", [
    None, "", "not json", "[]", '{"ok": false, "error": {"reason": "RevisionNotFound"}}',
    '{"ok": true, "digest": "md5:1"}',
    '{"ok": true, "direction": "upgrade", "applied": []}',  # a migrate report, no digest
])
def test_not_a_plan_summary(text: str | None) -> None:
    assert parse_plan_summary(text) is None


def test_truncated_step_list_keeps_the_real_count() -> None:
    text = json.dumps({"ok": True, "digest": DIGEST, "findings": {}, "stepsTruncated": 400,
                       "steps": [{"revision": "a", "findings": {}}]})
    plan = parse_plan_summary(text)
    assert plan is not None
    assert plan.step_count == 400


def test_first_unaccepted_skips_accepted_findings() -> None:
    plan = {"steps": [
        {"revision": "r1", "findings": [
            {"rule": "ban-drop-column", "severity": "error", "message": "drops", "accepted": True},
            {"rule": "prefer-text", "severity": "warning", "message": "w", "accepted": False}]},
        {"revision": "r2", "findings": [
            {"rule": "ban-drop-table", "severity": "error", "message": "drops t",
             "accepted": False}]}]}
    assert first_unaccepted(plan) == "r2: ban-drop-table: drops t"
    assert first_unaccepted(plan, "warning") == "r1: prefer-text: w"
    assert first_unaccepted(None) is None


# --- the decision -----------------------------------------------------------------------------


def _decide(review: ReviewSpec, plan: PlanSummary, **kwargs: Any) -> Any:
    return decide(review, plan, namespace="shop", name="umt-schema", **kwargs)


@pytest.mark.parametrize(("review", "plan", "action", "approval"), [
    (ReviewSpec(), summary(errors=2), "run", "NotRequired"),
    (ReviewSpec(lint="Block"), summary(errors=1), "block", "NotRequired"),
    (ReviewSpec(lint="Block"), summary(warnings=3, accepted=1), "run", "NotRequired"),
    (ReviewSpec(lint="Block"), summary(errors=1, steps=0), "run", "NotRequired"),
    (ReviewSpec(lint="Off", approval="OnFindings"), summary(errors=1), "run", "NotRequired"),
    (ReviewSpec(approval="OnFindings"), summary(accepted=3), "run", "NotRequired"),
    (ReviewSpec(approval="OnFindings"), summary(warnings=1), "wait", "Pending"),
    (ReviewSpec(approval="OnFindings", approved_plan_digest=DIGEST), summary(warnings=1),
     "run", "Approved"),
    (ReviewSpec(approval="OnFindings", approved_plan_digest=OTHER), summary(warnings=1),
     "wait", "Pending"),
    (ReviewSpec(approval="Always"), summary(), "wait", "Pending"),
    (ReviewSpec(approval="Always"), summary(steps=0), "run", "NotRequired"),
    (ReviewSpec(approval="Always", approved_plan_digest=DIGEST), summary(), "run", "Approved"),
    (ReviewSpec(lint="Block", approval="Always", approved_plan_digest=DIGEST),
     summary(errors=1), "block", "NotRequired"),
    (ReviewSpec(approval="Never", approved_plan_digest=OTHER), summary(errors=1), "run",
     "NotRequired"),
])
def test_decision_table(review: ReviewSpec, plan: PlanSummary, action: str,
                        approval: str) -> None:
    decision = _decide(review, plan)
    assert (decision.action, decision.approval) == (action, approval)
    assert decision.digest == plan.digest


def test_lint_failed_names_the_first_finding() -> None:
    decision = _decide(ReviewSpec(lint="Block"), summary(errors=2),
                       first_error="r2: ban-drop-table: drops t")
    assert decision.reason == reasons.LINT_FAILED
    assert "r2: ban-drop-table: drops t" in decision.message
    assert "2 error(s)" in decision.message
    assert "lint_accept" in decision.message


def test_approval_pending_says_the_digest_and_how_to_approve() -> None:
    decision = _decide(ReviewSpec(approval="OnFindings", approved_plan_digest=OTHER),
                       summary(warnings=1))
    assert decision.reason == reasons.APPROVAL_PENDING
    assert DIGEST in decision.message
    assert "another plan" in decision.message
    assert "umt-migrations approve umt-schema -n shop" in decision.message
    patch = f'{{"spec":{{"review":{{"approvedPlanDigest":"{DIGEST}"}}}}}}'
    assert f"--type merge -p '{patch}'" in decision.message
    assert approve_hint("shop", "umt-schema", DIGEST) in decision.message


# --- status -----------------------------------------------------------------------------------


def _flags(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_approval_pending_is_neither_reconciling_nor_stalled() -> None:
    status = review_status({"jobName": "old-2-x", "startTime": "t"}, generation=3,
                           state="pending", reason=reasons.APPROVAL_PENDING,
                           message="plan waits", now=NOW, job_name="s-plan-3-x")
    assert (status["jobName"], status["startTime"]) == ("s-plan-3-x", None)
    assert _flags(status) == {"Ready": ("False", "ApprovalPending"),
                              "Reconciling": ("False", "ApprovalPending"),
                              "Stalled": ("False", "ApprovalPending")}
    assert status["phase"] == "Pending"
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert status["message"] == "ApprovalPending: plan waits"


def test_lint_failed_is_stalled_and_planning_is_reconciling() -> None:
    stalled = review_status({}, generation=2, state="stalled", reason=reasons.LINT_FAILED,
                            message="x", now=NOW)
    assert _flags(stalled)["Stalled"] == ("True", "LintFailed")
    assert _flags(stalled)["Ready"] == ("False", "LintFailed")
    assert stalled["phase"] == "Failed"
    planning = review_status({}, generation=2, state="planning", reason=reasons.PLANNING,
                             message="Job p is planning", now=NOW)
    assert _flags(planning)["Reconciling"] == ("True", "Planning")
    assert _flags(planning)["Stalled"][0] == "False"


def test_review_status_keeps_the_revision_fields_and_the_drift_condition() -> None:
    previous = {"currentRevision": "a1", "conditions": [
        {"type": "Drifted", "status": "False", "reason": "NoDrift", "message": "",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}
    status = review_status(previous, generation=2, state="pending", reason="ApprovalPending",
                           message="m", now=NOW)
    assert "currentRevision" not in status  # a merge patch: left as it is
    assert _flags(status)["Drifted"] == ("False", "NoDrift")


def test_plan_status_shape() -> None:
    status = plan_status(summary(warnings=1), generation=4, job_name="s-plan-4-x",
                         config_map="s-plan", approval="Pending", planned_at="2026-12-06T22:00:00Z")
    assert status == {
        "generation": 4, "from": "3ab691d3a566", "to": "240cfb931a0a", "direction": "upgrade",
        "digest": DIGEST,
        "steps": [{"revision": "r0", "findings": {"error": 0, "warning": 1, "accepted": 0}}],
        "findings": {"error": 0, "warning": 1, "accepted": 0}, "sqlConfigMap": "s-plan",
        "approval": "Pending", "job": "s-plan-4-x", "plannedAt": "2026-12-06T22:00:00Z"}


# --- drift ------------------------------------------------------------------------------------

DRIFT_JSON = json.dumps({
    "version": 1, "supported": True, "revision": "240cfb931a0a", "drifted": True,
    "counts": {"extra": 1, "missing": 0, "modified": 1},
    "extra": {"tables": [], "columns": ["users.x"], "indexes": [], "constraints": []},
    "missing": {"tables": [], "columns": [], "indexes": [], "constraints": []},
    "modified": {"tables": [], "columns": [{"name": "users.email", "change": "type"}],
                 "indexes": [], "constraints": []}})


def test_drift_report_names_what_differs() -> None:
    report = parse_drift_report(DRIFT_JSON)
    assert report is not None
    assert report.drifted
    assert report.names["extra"] == ["column users.x"]
    assert report.names["modified"] == ["column users.email (type)"]


def test_drift_report_not_supported() -> None:
    report = parse_drift_report(json.dumps({"version": 1, "supported": False,
                                            "message": "no target_metadata"}))
    assert report == DriftReport(False, False, message="no target_metadata")
    assert parse_drift_report('{"ok": true}') is None


def test_drifted_leaves_ready_alone_with_report() -> None:
    previous = {"conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded",
                                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z",
                                "observedGeneration": 1}]}
    status = drift_status(previous, parse_drift_report(DRIFT_JSON), review=ReviewSpec(),
                          generation=1, job_name="d", now=NOW, checked_at="t")
    flags = _flags(status)
    assert flags["Ready"] == ("True", "Succeeded")
    assert flags["Drifted"] == ("True", "Drifted")
    drifted = next(c for c in status["conditions"] if c["type"] == "Drifted")
    assert "extra: column users.x" in drifted["message"]
    assert status["drift"]["extra"] == ["column users.x"]
    assert status["drift"]["checkedAt"] == "t"
    assert "message" not in status


def test_drifted_with_fail_takes_ready_down() -> None:
    status = drift_status({}, parse_drift_report(DRIFT_JSON),
                          review=ReviewSpec(on_drift="Fail"), generation=1, job_name="d",
                          now=NOW, checked_at="t")
    flags = _flags(status)
    assert flags["Ready"] == ("False", "Drifted")
    assert flags["Stalled"] == ("True", "Drifted")
    assert status["message"].startswith("Drifted: the database differs")


def test_no_drift_and_unknown() -> None:
    clean = json.dumps({"version": 1, "supported": True, "drifted": False, "counts": {}})
    status = drift_status({}, parse_drift_report(clean), review=ReviewSpec(on_drift="Fail"),
                          generation=1, job_name="d", now=NOW, checked_at="t")
    assert _flags(status) == {"Drifted": ("False", "NoDrift")}
    failed = drift_status({}, None, review=ReviewSpec(), generation=1, job_name="d", now=NOW,
                          checked_at="t", failure="Job d failed")
    assert _flags(failed) == {"Drifted": ("Unknown", "DriftCheckFailed")}


# --- Jobs -------------------------------------------------------------------------------------

SPEC = parse_spec({"targetRevision": "head", "allowDowngrade": True,
                   "database": {"urlSecretRef": {"name": "umt-db", "key": "url"}},
                   "alembic": {"config": "/srv/alembic.ini"},
                   "job": {"serviceAccountName": "migrator"}})


def migration_job() -> dict[str, Any]:
    return render_job(name="umt-schema", namespace="shop", uid="u-1", generation=3, spec=SPEC,
                      settings=Settings(), image="registry/umt:1.4")


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_plan_job_is_the_migration_job_with_plan_arguments() -> None:
    source = migration_job()
    plan = review_job(source, kind="plan", name="p")
    assert _container(plan)["args"] == ["plan", "--to", "head", "--format", "json",
                                        "--allow-downgrade", "--config", "/srv/alembic.ini"]
    for key in ("image", "env", "securityContext", "resources", "volumeMounts"):
        assert _container(plan)[key] == _container(source)[key]
    pod, source_pod = plan["spec"]["template"]["spec"], source["spec"]["template"]["spec"]
    assert {k: v for k, v in pod.items() if k != "containers"} == \
        {k: v for k, v in source_pod.items() if k != "containers"}
    assert plan["metadata"]["name"] == "p"
    assert plan["metadata"]["labels"][LABEL_JOB_KIND] == "plan"
    assert plan["spec"]["template"]["metadata"]["labels"][LABEL_JOB_KIND] == "plan"
    assert plan["metadata"]["annotations"] == source["metadata"]["annotations"]
    assert job_kind(plan) == "plan"
    assert job_kind(source) == "migrate"
    assert _container(source)["args"][0] == "migrate"  # the source is not changed


def test_drift_job_runs_check() -> None:
    drift = review_job(migration_job(), kind="drift", name="d")
    assert _container(drift)["args"] == ["check", "--format", "json",
                                         "--config", "/srv/alembic.ini"]
    assert job_kind(drift) == "drift"


def test_migration_job_with_plan_digest() -> None:
    job = with_plan_digest(migration_job(), DIGEST)
    assert _container(job)["args"][-2:] == ["--plan-digest", DIGEST]
    assert job["metadata"]["annotations"][ANNOTATION_PLAN_DIGEST] == DIGEST


def test_review_job_names() -> None:
    name = review_job_name("umt-schema", "u-1", 3, "plan")
    assert name.startswith("umt-schema-plan-3-")
    assert name == review_job_name("umt-schema", "u-1", 3, "plan")
    others = {review_job_name("umt-schema", "u-2", 3, "plan"),
              review_job_name("umt-schema", "u-1", 4, "plan"),
              review_job_name("umt-schema", "u-1", 3, "drift"),
              review_job_name("umt-schema", "u-1", 3, "drift", slot=7)}
    assert name not in others
    assert len(others) == 4
    long = review_job_name("a." * 120 + "z", "u", 123456, "drift", slot=99999999)
    assert len(long) <= 63
    assert long.endswith(long.split("-")[-1])
    assert all(c.isalnum() or c == "-" for c in long)


# --- reading the plan back --------------------------------------------------------------------


def _pod(name: str, created: str, message: str | None, finished: str = "") -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message, "finishedAt": finished}}
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "migrate", "state": state}]}}


def test_termination_message_of_the_last_pod() -> None:
    pods = [_pod("a", "1", "first", "2026-01-01T00:00:01Z"),
            _pod("b", "2", "second", "2026-01-01T00:00:02Z")]
    assert termination_message(pods) == "second"
    assert termination_message([]) is None


def test_plan_from_log_takes_the_line_with_the_digest() -> None:
    full = json.dumps({"version": 1, "digest": DIGEST, "steps": []})
    log = "\n".join(["INFO  [alembic] Context impl", full,
                     json.dumps({"digest": OTHER, "steps": []}), "{broken " + DIGEST])
    assert plan_from_log(log, DIGEST) == full
    assert plan_from_log(log, "sha256:" + "00" * 32) is None
    assert plan_from_log("", DIGEST) is None


def _owner() -> dict[str, Any]:
    return {"metadata": {"name": "umt-schema", "namespace": "shop", "uid": "u-1"}}


def _plan_text(steps: int, sql_bytes: int) -> str:
    return json.dumps({"version": 1, "digest": DIGEST, "steps": [
        {"revision": f"r{i}", "sql": "x" * sql_bytes,
         "findings": [{"rule": "a", "severity": "error"}] * 3} for i in range(steps)]},
        separators=(",", ":"))


def test_config_map_holds_the_plan_owned_by_the_resource() -> None:
    text = _plan_text(2, 100)
    cm = plan_config_map(owner=_owner(), plan_text=text, digest=DIGEST, generation=3)
    assert cm["data"][PLAN_KEY] == text
    assert cm["metadata"]["name"] == "umt-schema-plan"
    assert cm["metadata"]["namespace"] == "shop"
    (ref,) = cm["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
                   "name": "umt-schema", "uid": "u-1", "controller": True}
    annotations = cm["metadata"]["annotations"]
    assert annotations[ANNOTATION_PLAN_DIGEST] == DIGEST
    assert annotations[ANNOTATION_TRUNCATED] == "false"
    assert annotations[ANNOTATION_PLAN_SHA256] == \
        "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_config_map_truncates_big_plans_with_a_marker() -> None:
    text = _plan_text(5, 3000)
    cm = plan_config_map(owner=_owner(), plan_text=text, digest=DIGEST, generation=1,
                         limit=8000)
    kept = cm["data"][PLAN_KEY]
    assert len(kept.encode()) <= 8000
    data = json.loads(kept)  # still a JSON document
    assert data["truncated"]["bytes"] == len(text.encode())
    assert data["truncated"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    omitted = data["truncated"]["omittedSqlOf"]
    assert omitted == [f"r{i}" for i in range(5 - len(omitted), 5)]  # the last ones first
    assert data["steps"][-1]["sql"] == TRUNCATED_SQL
    assert data["steps"][0]["sql"] == "x" * 3000
    assert cm["metadata"]["annotations"][ANNOTATION_TRUNCATED] == "true"
    # the digest and hash stay those of the whole plan
    assert cm["metadata"]["annotations"][ANNOTATION_PLAN_SHA256] == \
        "sha256:" + hashlib.sha256(text.encode()).hexdigest()
