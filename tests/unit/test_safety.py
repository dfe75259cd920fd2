"""Lock-wait bounds: settings, revision declarations, SQL, error classes, back-off (pure)."""

from __future__ import annotations

import random
import subprocess
import sys
from types import SimpleNamespace

import pytest

from umt_migrations.errors import MigrationError
from umt_migrations.safety import (
    BACKOFF_CAP,
    DEADLOCK,
    LOCK,
    STATEMENT,
    Safety,
    StepBounds,
    backoff,
    failure_kind,
    redact_query,
    step_bounds,
    step_sql,
)


def test_defaults_follow_the_practice_of_busy_databases() -> None:
    safety = Safety()
    assert (safety.step_lock_timeout, safety.statement_timeout) == (2.0, None)
    assert (safety.lock_retries, safety.connect_timeout) == (4, 10.0)


@pytest.mark.parametrize(
    ("attributes", "lock", "statement", "declared"),
    [
        ({}, 2.0, None, {}),
        ({"lock_timeout": None}, None, None, {"lock_timeout": None}),
        ({"lock_timeout": 30}, 30.0, None, {"lock_timeout": 30.0}),
        ({"statement_timeout": 600.5}, 2.0, 600.5, {"statement_timeout": 600.5}),
    ],
)
def test_a_revision_declares_its_own_bounds(
    attributes: dict[str, object], lock: float | None, statement: float | None,
    declared: dict[str, object],
) -> None:
    bounds = step_bounds(Safety(), "r1", SimpleNamespace(**attributes))  # type: ignore[arg-type]
    assert (bounds.lock_timeout, bounds.statement_timeout, bounds.declared) == (
        lock, statement, declared)


@pytest.mark.parametrize("value", ["2s", 0, -1, float("inf"), float("nan"), True, 10**9])
def test_a_malformed_declaration_fails_the_revision_by_name(value: object) -> None:
    with pytest.raises(MigrationError) as caught:
        step_bounds(Safety(), "r1", SimpleNamespace(lock_timeout=value))  # type: ignore[arg-type]
    assert caught.value.revision == "r1" and "lock_timeout" in caught.value.message


def test_postgresql_bounds_live_in_the_revision_transaction() -> None:
    assert step_sql("postgresql", StepBounds(2.0, None)) == (
        "SET LOCAL lock_timeout = '2000ms'; SET LOCAL statement_timeout = DEFAULT")
    assert step_sql("postgresql", StepBounds(None, 1.5)) == (
        "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = '1500ms'")


def test_mysql_bounds_are_whole_seconds_of_the_session() -> None:
    assert step_sql("mysql", StepBounds(0.5, 2.5)) == (
        "SET SESSION lock_wait_timeout = 1, innodb_lock_wait_timeout = 1, "
        "max_statement_time = 2.5")
    assert step_sql("mysql", StepBounds(None, None), mariadb=False) == (
        "SET SESSION lock_wait_timeout = @@GLOBAL.lock_wait_timeout, "
        "innodb_lock_wait_timeout = @@GLOBAL.innodb_lock_wait_timeout")
    assert step_sql("sqlite", StepBounds(2.0, None)) is None


class PgError(Exception):
    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(text)
        self.pgcode = code


def test_errors_are_classified_through_the_exception_chain() -> None:
    import pymysql.err  # type: ignore[import-untyped]

    assert failure_kind(PgError("55P03")) == LOCK
    assert failure_kind(PgError("40P01")) == DEADLOCK
    timed_out = PgError("57014", "canceling statement due to statement timeout")
    assert failure_kind(timed_out) == STATEMENT
    assert failure_kind(PgError("57014", "canceling statement due to user request")) is None
    assert failure_kind(pymysql.err.OperationalError(1205, "Lock wait timeout")) == LOCK
    assert failure_kind(pymysql.err.OperationalError(1213, "Deadlock")) == DEADLOCK
    assert failure_kind(pymysql.err.OperationalError(2013, "Lost connection")) is None
    wrapped = RuntimeError("env.py wrapped it")
    wrapped.__cause__ = PgError("55P03")
    assert failure_kind(wrapped) == LOCK


def test_backoff_grows_jittered_and_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, BACKOFF_CAP)):
        delays = [backoff(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed


def test_another_sessions_query_is_shown_without_its_literals() -> None:
    query = "ALTER ROLE app PASSWORD 'hunter2-secret';\nSELECT 2"
    assert redact_query(query) == "ALTER ROLE app PASSWORD '…';"
    assert redact_query("SELECT * FROM t WHERE a = 'x''y' AND b = $$z$$") == (
        "SELECT * FROM t WHERE a = '…' AND b = '…'")
    assert len(redact_query("SELECT " + "x" * 500)) == 120


@pytest.mark.parametrize(
    "args",
    [
        ["--step-lock-timeout", "inf"],
        ["--step-lock-timeout", "nan"],
        ["--step-lock-timeout", "-1"],
        ["--step-lock-timeout", "1e9"],
        ["--statement-timeout", "-0.5"],
        ["--lock-retries", "-1"],
        ["--lock-retries", "101"],
        ["--lock-retries", "2.5"],
        ["--connect-timeout", "0"],
        ["--connect-timeout", "inf"],
        ["--connect-timeout", "601"],
    ],
)
def test_out_of_range_options_are_refused_with_exit_2(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "umt_migrations", "migrate", "--to", "head", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and args[0] in proc.stderr, proc.stderr
