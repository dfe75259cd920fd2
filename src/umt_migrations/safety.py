"""Bounded lock waits per revision: the settings, a revision's own declaration, the SQL.

On a busy primary an ``ALTER TABLE`` that waits for its lock makes every later query on the
table queue behind it. Each revision therefore runs with a short lock timeout and is retried
after a back-off when the lock is not free (PostgreSQL: ``SET LOCAL lock_timeout`` in the
revision's transaction; MySQL/MariaDB: ``lock_wait_timeout`` and ``innodb_lock_wait_timeout``
of the session, whole seconds). A revision that must wait declares it in its own file::

    lock_timeout = None        # wait as long as it takes (a maintenance window)
    lock_timeout = 30          # or this many seconds
    statement_timeout = 600    # likewise for the statement timeout

Pure: classifying a driver error and rendering SQL need no connection.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .errors import MIGRATION_FAILED, MigrationError

DEFAULT_STEP_LOCK_TIMEOUT = 2.0
#: retries after the first attempt: 5 attempts in all
DEFAULT_LOCK_RETRIES = 4
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Back-off before attempt n+1: ``BACKOFF_BASE * 2**(n-1)`` capped at ``BACKOFF_CAP``, of which
#: a random half to all is slept (jitter keeps retrying runners from stampeding together).
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
#: Longest accepted for any of these durations (a day): a larger value is a typo.
MAX_SECONDS = 86400.0
MAX_CONNECT_SECONDS = 600.0
MAX_LOCK_RETRIES = 100

#: Module attributes a revision file may set, and the report's names for them.
DECLARABLE = {"lock_timeout": "lockTimeout", "statement_timeout": "statementTimeout"}

_UNSET = object()

# What a failed statement means: SQLSTATEs (PostgreSQL) and error numbers (MySQL/MariaDB).
LOCK = "lock"
DEADLOCK = "deadlock"
STATEMENT = "statement"
_PG_KINDS = {"55P03": LOCK, "40P01": DEADLOCK}
_MYSQL_KINDS = {1205: LOCK, 1213: DEADLOCK, 1969: STATEMENT, 3024: STATEMENT}


@dataclass(frozen=True)
class Safety:
    """The bounds ``migrate`` runs with (``--step-lock-timeout`` and friends).

    ``None`` for a timeout means no bound from the runner (the server's own setting applies).
    """

    step_lock_timeout: float | None = DEFAULT_STEP_LOCK_TIMEOUT
    statement_timeout: float | None = None
    lock_retries: int = DEFAULT_LOCK_RETRIES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def describe(self) -> dict[str, Any]:
        """The report's ``safety`` object."""
        return {
            "stepLockTimeoutSeconds": self.step_lock_timeout,
            "statementTimeoutSeconds": self.statement_timeout,
            "lockRetries": self.lock_retries,
            "connectTimeoutSeconds": self.connect_timeout,
        }


@dataclass(frozen=True)
class StepBounds:
    """The bounds one revision runs with, and what the revision declared itself."""

    lock_timeout: float | None
    statement_timeout: float | None
    declared: dict[str, float | None] = field(default_factory=dict)


def step_bounds(safety: Safety, revision: str, module: ModuleType | None) -> StepBounds:
    """The run's bounds, overridden by the revision file's own ``lock_timeout`` and friends."""
    declared: dict[str, float | None] = {}
    for name in DECLARABLE:
        value = getattr(module, name, _UNSET) if module is not None else _UNSET
        if value is _UNSET:
            continue
        declared[name] = _declared_seconds(revision, name, value)
    return StepBounds(
        lock_timeout=declared.get("lock_timeout", safety.step_lock_timeout),
        statement_timeout=declared.get("statement_timeout", safety.statement_timeout),
        declared=declared,
    )


def _declared_seconds(revision: str, name: str, value: object) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and math.isfinite(float(value)) and 0 < float(value) <= MAX_SECONDS:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise MigrationError(
        MIGRATION_FAILED,
        f"revision {revision} declares {name} = {value!r}: expected None (no limit) or a number "
        f"of seconds above 0 and at most {MAX_SECONDS:g}",
        revision=revision,
    )


def step_sql(
    backend: str, bounds: StepBounds, *, mariadb: bool = True, local: bool = True
) -> str | None:
    """The statement that applies ``bounds`` at the start of a revision (None: nothing to do).

    PostgreSQL: ``SET LOCAL`` (``local``), so the bound lives and dies with the revision's
    transaction: for a revision that declares its own bounds. The run's defaults are set once
    per session instead (``local=False``): a ``SET`` made in a transaction that rolls back is
    undone with it, which is why the runner sets them again at every attempt (see
    :class:`~umt_migrations.stepguard.StepGuard`).
    MySQL/MariaDB: session variables in whole seconds (the server accepts no fraction); no
    limit means the server's global value.
    """
    if backend == "postgresql":
        lock = _pg_ms(bounds.lock_timeout)
        statement = _pg_ms(bounds.statement_timeout) if bounds.statement_timeout else "DEFAULT"
        scope = "SET LOCAL" if local else "SET"
        return f"{scope} lock_timeout = {lock}; {scope} statement_timeout = {statement}"
    if backend in ("mysql", "mariadb"):
        if bounds.lock_timeout is None:
            waits = ("@@GLOBAL.lock_wait_timeout", "@@GLOBAL.innodb_lock_wait_timeout")
        else:
            whole = str(max(1, math.ceil(bounds.lock_timeout)))
            waits = (whole, whole)
        parts = [f"lock_wait_timeout = {waits[0]}", f"innodb_lock_wait_timeout = {waits[1]}"]
        if mariadb:  # seconds, fractions allowed; MySQL's max_execution_time bounds SELECTs only
            limit = f"{bounds.statement_timeout:g}" if bounds.statement_timeout else "0"
            parts.append(f"max_statement_time = {limit}")
        elif bounds.statement_timeout:
            parts.append(f"max_execution_time = {math.ceil(bounds.statement_timeout * 1000)}")
        return "SET SESSION " + ", ".join(parts)
    return None


def _pg_ms(seconds: float | None) -> str:
    return "0" if seconds is None else f"'{max(1, round(seconds * 1000))}ms'"


def failure_kind(exc: BaseException) -> str | None:
    """``lock``, ``deadlock`` or ``statement`` when a driver error (anywhere in the chain of
    ``exc``) is a lock wait timeout, a deadlock or a statement timeout; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        orig = getattr(current, "orig", None)
        for candidate in (orig, current):
            kind = _kind_of(candidate)
            if kind:
                return kind
        current = current.__cause__ or current.__context__
    return None


def _kind_of(error: object) -> str | None:
    if error is None:
        return None
    args = getattr(error, "args", ())
    if type(error).__module__.startswith(("pymysql", "MySQLdb")):  # errno first; a SQLSTATE
        return _MYSQL_KINDS.get(args[0]) if args and isinstance(args[0], int) else None
    code = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
    if isinstance(code, str):
        if code == "57014" and "statement timeout" in str(error):
            return STATEMENT
        return _PG_KINDS.get(code)
    return None


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to sleep after failed attempt ``attempt`` (1-based): exponential, jittered,
    capped."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$\$.*?\$\$", re.DOTALL)


def redact_query(query: str | None, limit: int = 120) -> str:
    """The first line of another session's query, string literals replaced by ``'…'``.

    Another session's query may carry anything (``ALTER ROLE … PASSWORD '…'``): only its
    shape is shown, never a literal.
    """
    if not query:
        return ""
    text = _LITERAL.sub("'…'", query.strip())
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
