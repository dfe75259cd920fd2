"""A migration that could not get its table locks: what the resource says while the Job retries
the pod (``Reconciling``, reason ``LockTimeout``, the attempt and the blocker) and once it gave
up (``Stalled``/``LockTimeout`` with the blocker), from the runner's real report fields."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_status import (
    RUNNING,
    failed_job,
    failure_report,
    job,
    pod,
    status_of,
    terminated,
)
from umt_operator import reasons
from umt_operator.status import find_condition

pytestmark = pytest.mark.unit

BLOCKER = "pid 4242 (idle in transaction for 31 s): UPDATE users SET name = '…' WHERE id = 7"
RUNNER_MESSAGE = (
    "revision 3f2a could not get its locks in 5 attempt(s) (last: lock timeout of 2 s after "
    f"2.0 s, waiting on {BLOCKER}); nothing of it stayed and the database is at the last "
    "committed revision; the Job will retry"
)


def lock_report(**error: Any) -> str:
    fields = {"reason": reasons.LOCK_TIMEOUT, "message": RUNNER_MESSAGE, "revision": "3f2a",
              "attempts": "5", "blocker": BLOCKER, **error}
    return failure_report(reasons.LOCK_TIMEOUT, RUNNER_MESSAGE, error=fields,
                          fromRevision="a1b2c3", toRevision="c1c1c1")


def ended(message: str, suffix: str = "aaaaa") -> dict[str, Any]:
    return pod(terminated(1, message), suffix=suffix)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    found = {}
    for type_ in ("Ready", "Reconciling", "Stalled"):
        condition = find_condition(status["conditions"], type_) or {}
        found[type_] = (condition.get("status"), condition.get("reason"))
    return found


def test_pod_ended_with_lock_timeout_while_the_job_may_retry_is_reconciling() -> None:
    status = status_of(job(failed=1), [ended(lock_report())])
    assert conditions(status) == {"Ready": ("False", "LockTimeout"),
                                  "Reconciling": ("True", "LockTimeout"),
                                  "Stalled": ("False", "LockTimeout")}
    assert status["message"] == (
        "Job umt-schema-3-k2x9: attempt 1 ended with LockTimeout: revision 3f2a could not get "
        f"its locks in 5 tries, blocked by {BLOCKER}; the Job retries it after its back-off "
        "while its backoffLimit allows")


def test_next_attempt_running_names_the_previous_lock_timeout_and_its_blocker() -> None:
    pods = [ended(lock_report()), ended(lock_report(), "bbbbb"),
            pod(RUNNING, suffix="ccccc")]
    status = status_of(job(failed=2, active=1), pods)
    assert conditions(status)["Reconciling"] == ("True", "LockTimeout")
    assert status["message"].startswith(
        "Job umt-schema-3-k2x9: attempt 3 is migrating; attempt 2 ended with LockTimeout: "
        "revision 3f2a could not get its locks in 5 tries, blocked by pid 4242")


def test_job_that_gave_up_is_stalled_lock_timeout_with_the_blocker() -> None:
    pods = [ended(lock_report()), ended(lock_report(), "bbbbb"), ended(lock_report(), "ccccc")]
    limit = "Job has reached the specified backoff limit"
    status = status_of(failed_job("BackoffLimitExceeded", limit, failed=3), pods)
    assert conditions(status) == {"Ready": ("False", "LockTimeout"),
                                  "Reconciling": ("False", "LockTimeout"),
                                  "Stalled": ("True", "LockTimeout")}
    assert status["phase"] == "Failed"
    assert status["currentRevision"] == "c1c1c1"
    assert status["message"] == (
        f"LockTimeout: revision 3f2a could not get its locks in 5 tries, blocked by {BLOCKER} "
        "(last of 3 pod attempts); the database stays at c1c1c1, the revisions before it "
        "committed. End or wait out the blocking transaction, then change the spec to run the "
        "migration again (Job umt-schema-3-k2x9: BackoffLimitExceeded)")
    assert "the Job will retry" not in status["message"]  # it will not: it gave up


def test_unknown_blocker_is_said_so() -> None:
    status = status_of(job(failed=1), [ended(lock_report(blocker=None))])
    assert "blocked by a session the runner could not identify" in status["message"]


def test_report_of_an_older_runner_keeps_its_own_words() -> None:
    old = failure_report(reasons.LOCK_TIMEOUT, "timed out waiting for the migration lock")
    status = status_of(job(failed=1), [ended(old)])
    assert conditions(status)["Reconciling"] == ("True", reasons.MIGRATING)
    assert "timed out waiting for the migration lock" in status["message"]


def test_other_failures_are_untouched() -> None:
    other = failure_report(reasons.DATABASE_UNAVAILABLE, "cannot reach the database")
    status = status_of(job(failed=1), [ended(other)])
    assert conditions(status)["Reconciling"] == ("True", reasons.MIGRATING)


def test_statement_timeout_is_stalled_at_once_with_the_runners_words() -> None:
    message = ("revision 3f2a exceeded the statement timeout of 1.5 s and was stopped and rolled "
               "back; raise --statement-timeout or declare statement_timeout in the revision")
    ended_3 = pod(terminated(3, failure_report(reasons.STATEMENT_TIMEOUT, message)))
    policy = "Container migrate for pod umt/umt-schema-3-k2x9-aaaaa failed with exit code 3"
    status = status_of(failed_job("PodFailurePolicy", policy), [ended_3])
    assert conditions(status)["Stalled"] == ("True", "StatementTimeout")
    assert status["message"].startswith(f"StatementTimeout: {message}")
