"""Each revision starts by bounding its own lock waits, and is watched while it runs.

The runner hands Alembic its steps one by one; each is wrapped so that, inside the revision's
transaction (on the connection the project's ``env.py`` configured, which may be one it opened
itself), the revision's bounds are set before its ``upgrade()``/``downgrade()`` runs. The
guard also records what a retry must know: whether the revision changed anything that a
rollback cannot undo (MySQL/MariaDB: any statement that completed, since DDL commits on its
own; PostgreSQL: anything run in ``autocommit_block()``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext, MigrationStep

from . import graph
from .lockwatch import LockWatch, session_id
from .safety import DECLARABLE, Safety, StepBounds, step_bounds, step_sql


@dataclass
class StepState:
    """The revision being run, as far as a retry decision needs it."""

    revision: str
    bounds: StepBounds
    backend: str
    outside_transaction: bool = False  #: ran something in ``autocommit_block()``
    baseline: int = 0  #: statements counted before the revision's own first one

    def changed(self, guard: StepGuard) -> bool:
        """Whether a rollback leaves something of this revision behind."""
        if self.outside_transaction:
            return True
        if self.backend == "postgresql":
            return False  # transactional DDL: the revision's transaction undoes it all
        return guard.statements > self.baseline


@dataclass
class StepGuard:
    """Per-run state shared by the wrapped steps."""

    safety: Safety
    watch: LockWatch
    step: StepState | None = None
    statements: int = 0
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)
    _counted: set[int] = field(default_factory=set)
    #: Sessions that carry the run's default bounds in this attempt, keyed by (driver
    #: connection, server session id); True when the last revision on it declared its own (a
    #: ``SET LOCAL`` that may still be in force in a run-wide transaction).
    _sessions: dict[tuple[int, int | None], bool] = field(default_factory=dict)

    def wrap(self, steps: Iterator[MigrationStep], context: MigrationContext) -> Iterator[Any]:
        """``steps`` as Alembic will run them, each bounding itself first."""
        # A new attempt (env.py runs again): whatever the last one SET in a transaction that
        # rolled back is gone, so every session is bounded anew.
        self._sessions.clear()
        self._patch_autocommit(context)
        for step in steps:
            yield _GuardedStep(step, functools.partial(self._begin, step, context))
            self.watch.stop()  # Alembic asks for the next step once this one committed
            self.step = None

    def end(self) -> None:
        self.watch.stop()

    def _begin(self, step: MigrationStep, context: MigrationContext) -> None:
        revision = graph.step_revision(step)
        module = getattr(getattr(step, "revision", None), "module", None)
        bounds = step_bounds(self.safety, revision, module)
        conn = context.connection
        assert conn is not None
        backend = conn.dialect.name
        self.step = StepState(revision, bounds, backend)
        if bounds.declared:
            self.declared[revision] = {DECLARABLE[k]: v for k, v in bounds.declared.items()}
        self._count(conn)
        pid = session_id(conn.connection.dbapi_connection)
        sql = self._bounds_sql(conn, pid, bounds)
        if sql:
            conn.exec_driver_sql(sql)
        self.step.baseline = self.statements
        self.watch.watch(pid, (bounds.lock_timeout or 3.0) / 3)

    def _bounds_sql(
        self, conn: sa.Connection, pid: int | None, bounds: StepBounds
    ) -> str | None:
        """What bounds this revision: the run's defaults once per session and attempt (a round
        trip per revision cost ~5 % of a 200-revision run), a revision's own declared bounds
        with ``SET LOCAL`` for its transaction only, and the defaults again after it."""
        backend = conn.dialect.name
        mariadb = bool(getattr(conn.dialect, "is_mariadb", False))
        key = (id(conn.connection.dbapi_connection), pid)
        after_declared = self._sessions.get(key)
        parts = []
        if after_declared is None:  # this session's first revision in this attempt
            parts.append(step_sql(backend, self._defaults, mariadb=mariadb, local=False))
        if bounds.declared:
            parts.append(step_sql(backend, bounds, mariadb=mariadb))
        elif after_declared:
            parts.append(step_sql(backend, self._defaults, mariadb=mariadb))
        self._sessions[key] = bool(bounds.declared)
        if backend != "postgresql":  # session variables: the last SET wins; one statement
            parts = parts[-1:]
        sql = "; ".join(part for part in parts if part)
        return sql or None

    @property
    def _defaults(self) -> StepBounds:
        return StepBounds(self.safety.step_lock_timeout, self.safety.statement_timeout)

    def _count(self, conn: sa.Connection) -> None:
        """Count completed statements on MySQL/MariaDB (where each DDL commits)."""
        if conn.dialect.name == "postgresql" or id(conn) in self._counted:
            return
        self._counted.add(id(conn))

        def counted(*_args: Any) -> None:
            self.statements += 1

        sa.event.listen(conn, "after_cursor_execute", counted)

    def _patch_autocommit(self, context: MigrationContext) -> None:
        """Note a revision's ``autocommit_block()``; set its bounds again after it."""
        original = context.autocommit_block
        if getattr(original, "_umt_guarded", False):
            return

        @contextmanager
        def autocommit_block() -> Iterator[None]:
            if self.step is not None:
                self.step.outside_transaction = True
                self.declared.setdefault(self.step.revision, {})["outsideTransaction"] = True
            conn = context.connection
            if conn is not None and conn.dialect.name == "postgresql":
                # What runs outside the revision's transaction (CREATE INDEX CONCURRENTLY) waits
                # as long as it takes: the session's defaults come off, and go back on at the
                # next revision.
                conn.exec_driver_sql("RESET lock_timeout; RESET statement_timeout")
                key = (id(conn.connection.dbapi_connection),
                       session_id(conn.connection.dbapi_connection))
                self._sessions.pop(key, None)
            with original():
                yield
            step = self.step
            conn = context.connection
            if step is not None and conn is not None:  # a new transaction: SET LOCAL again
                sql = step_sql(conn.dialect.name, step.bounds,
                               mariadb=bool(getattr(conn.dialect, "is_mariadb", False)))
                if sql:
                    conn.exec_driver_sql(sql)

        autocommit_block._umt_guarded = True  # type: ignore[attr-defined]
        context.autocommit_block = autocommit_block  # type: ignore[method-assign]


class _GuardedStep:
    """A step whose migration function first sets the revision's bounds (else a proxy)."""

    def __init__(self, step: MigrationStep, begin: Callable[[], None]) -> None:
        self._step = step
        self._begin = begin

    def __getattr__(self, name: str) -> Any:
        return getattr(self._step, name)

    def __str__(self) -> str:
        return str(self._step)

    @property
    def migration_fn(self) -> Callable[..., Any]:
        migrate = self._step.migration_fn

        def run(**kw: Any) -> Any:
            self._begin()
            return migrate(**kw)

        return run
