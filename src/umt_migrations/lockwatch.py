"""Who a revision is waiting on: a watcher thread that looks while the wait is happening.

A lock timeout says nothing about who held the lock, and once it fired the wait is over. So
while a revision runs, a daemon thread looks every ``period`` seconds, from a connection of its
own (opened on the first look: a run of fast revisions never opens it), at the sessions that
block the revision's session: ``pg_blocking_pids()`` and ``pg_stat_activity`` on PostgreSQL;
InnoDB's lock waits, else the oldest other open transaction on the same database, on
MySQL/MariaDB (a metadata-lock wait names no holder there). The last blocker
seen is what the log and the report name: pid, state, age and the first line of its query with
every literal redacted (another session's query may hold a password). A look that fails (no
privilege to read another user's query, say) is shown as what it could read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .safety import redact_query

log = logging.getLogger("umt_migrations.migrate")

#: Longest between two looks; shorter when the lock timeout is shorter.
MAX_PERIOD = 1.0
MIN_PERIOD = 0.05
#: How often the thread checks for a revision to watch while none runs.
IDLE_PERIOD = 0.1

_PG_BLOCKERS = (
    "SELECT a.pid, a.state, a.query, "
    "extract(epoch FROM clock_timestamp() - coalesce(a.xact_start, a.query_start)) "
    "FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%(pid)s)) ORDER BY a.pid"
)
# MariaDB/MySQL: row-lock waits name their blocker; a metadata-lock wait does not, so the
# oldest other open transaction (the usual culprit: a long one that read the table) is shown.
_MYSQL_ROW_BLOCKERS = (
    "SELECT b.trx_mysql_thread_id, b.trx_state, b.trx_query, "
    "TIMESTAMPDIFF(SECOND, b.trx_started, NOW()) "
    "FROM information_schema.INNODB_LOCK_WAITS w "
    "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
    "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id "
    "WHERE r.trx_mysql_thread_id = %(pid)s"
)
_MYSQL_OLD_TRANSACTIONS = (
    "SELECT p.ID, p.COMMAND, p.INFO, TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
    "FROM information_schema.INNODB_TRX t "
    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
    "WHERE p.ID <> %(pid)s AND p.ID <> CONNECTION_ID() AND p.DB = DATABASE() "
    "ORDER BY t.trx_started LIMIT 3"
)


@dataclass(frozen=True)
class Blocker:
    """A session that held up a revision."""

    pid: int
    state: str
    query: str
    seconds: float | None

    def describe(self) -> str:
        age = f" for {self.seconds:.0f} s" if self.seconds is not None else ""
        query = f": {self.query}" if self.query else ""
        return f"pid {self.pid} ({self.state or 'unknown state'}{age}){query}"


def session_id(dbapi_connection: Any) -> int | None:
    """The server's id of a driver connection, without a round trip (None when unknown)."""
    info = getattr(dbapi_connection, "info", None)
    pid = getattr(info, "backend_pid", None)  # psycopg2 >= 2.8
    if pid is None and hasattr(dbapi_connection, "thread_id"):  # PyMySQL
        pid = dbapi_connection.thread_id()
    return int(pid) if pid else None


class LockWatch:
    """Looks at what blocks the revision being run; used as ``watch(pid, period)`` / ``stop()``."""

    def __init__(self, connect: Callable[[], sa.Connection]) -> None:
        self._connect = connect
        self._conn: sa.Connection | None = None
        self._cond = threading.Condition()
        self._target: tuple[int, float] | None = None  # (session id, period)
        self._generation = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self.blockers: tuple[Blocker, ...] = ()
        self.started = 0.0

    def watch(self, pid: int | None, period: float) -> None:
        """Start watching session ``pid`` (a revision begins); forgets the last blockers."""
        with self._cond:
            self._generation += 1
            self.blockers = ()
            self.started = time.monotonic()
            self._target = None if pid is None else (pid, min(MAX_PERIOD, max(MIN_PERIOD, period)))
            if self._thread is None and pid is not None:
                self._thread = threading.Thread(target=self._loop, name="lock-watch", daemon=True)
                self._thread.start()
            # No notify: the thread wakes on its own timer (see _loop). Waking it for every
            # revision cost a thread switch per step, a few per cent of a 200-revision run.

    def stop(self) -> None:
        """Stop watching (the revision ended); the last blockers stay readable."""
        with self._cond:
            self._generation += 1
            self._target = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._target = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the server went away: nothing to close
                self._conn.close()

    def _loop(self) -> None:
        """Look at a revision's blockers once it has run ``period`` seconds, then every period.

        The thread sleeps on a timer rather than being woken by each revision: a revision that
        ends before its first look costs nothing. It looks at most ``IDLE_PERIOD`` late.
        """
        seen_generation, next_look = -1, 0.0
        while True:
            with self._cond:
                if self._closed:
                    return
                generation, target = self._generation, self._target
                if target is None:
                    self._cond.wait(timeout=IDLE_PERIOD)
                    continue
                pid, period = target
                if generation != seen_generation:  # a revision began since the last look
                    seen_generation, next_look = generation, self.started + period
                now = time.monotonic()
                if now < next_look:
                    self._cond.wait(timeout=next_look - now)
                    continue
                next_look = now + period
            found = self._look(pid)
            with self._cond:
                if generation == self._generation and found:
                    self.blockers = found
                    waited = time.monotonic() - self.started
                    if waited >= 5 * MAX_PERIOD and int(waited) % 5 == 0:
                        log.info("waiting %.0f s on %s", waited, found[0].describe())

    def _look(self, pid: int) -> tuple[Blocker, ...]:
        try:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                self._conn = self._connect()
                self._conn.execution_options(isolation_level="AUTOCOMMIT")
            conn = self._conn
            if conn.dialect.name == "postgresql":
                rows = conn.exec_driver_sql(_PG_BLOCKERS, {"pid": pid}).fetchall()
            else:
                rows = conn.exec_driver_sql(_MYSQL_ROW_BLOCKERS, {"pid": pid}).fetchall()
                if not rows:
                    rows = conn.exec_driver_sql(_MYSQL_OLD_TRANSACTIONS, {"pid": pid}).fetchall()
        except Exception:
            log.debug("could not look at the lock's holders", exc_info=True)
            return ()
        return tuple(
            Blocker(
                pid=int(row[0]),
                state=str(row[1] or ""),
                query=redact_query(row[2]),
                seconds=None if row[3] is None else float(row[3]),
            )
            for row in rows
        )
