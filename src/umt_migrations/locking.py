"""One migration per database at a time: a session-level advisory lock.

PostgreSQL: ``pg_advisory_lock`` (advisory locks are scoped to the database).
MySQL/MariaDB: ``GET_LOCK`` (names are server-wide, so the name includes the database).
SQLite: an exclusive ``flock`` on a file beside the database file.

The lock lives on the connection given to :func:`migration_lock` and is taken outside any
transaction, so a migration's own commits and rollbacks never release it; it is released
explicitly, or by the server when the session ends (a killed pod frees it).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from .errors import INVALID_SPEC, LOCK_TIMEOUT, MigrationError

log = logging.getLogger(__name__)

LOCK_NAME = "umt-migrations"
#: PostgreSQL advisory lock key: a stable signed 64-bit number derived from LOCK_NAME.
PG_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(LOCK_NAME.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def migration_lock(
    conn: sa.Connection, timeout: float, *, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the database's migration lock for the body of the ``with`` block.

    ``conn`` must not be inside a transaction when this is entered; it is committed after the
    lock is taken so the caller receives it clean. Raises ``MigrationError(LockTimeout)`` when
    the lock is not free within ``timeout`` seconds (0: do not wait).
    """
    backend = conn.dialect.name
    if backend == "postgresql":
        lock, unlock = _pg_lock, _pg_unlock
    elif backend in ("mysql", "mariadb"):
        lock, unlock = _mysql_lock, _mysql_unlock
    elif backend == "sqlite":
        with _file_lock(conn, timeout, on_wait):
            yield
        return
    else:
        raise MigrationError(
            INVALID_SPEC,
            f"{backend} is not supported: migrations are locked on PostgreSQL, MySQL/MariaDB "
            "and SQLite only",
        )

    lock(conn, timeout, on_wait)
    conn.commit()
    try:
        yield
    finally:
        try:
            if conn.in_transaction():
                conn.rollback()
            unlock(conn)
            conn.commit()
        except sa.exc.DBAPIError:
            # The session is unusable (e.g. the server went away); closing it frees the lock.
            log.debug("could not release the migration lock explicitly", exc_info=True)


def _timed_out(timeout: float) -> MigrationError:
    return MigrationError(
        LOCK_TIMEOUT,
        f"timed out after {timeout:g} s waiting for the migration lock: another migration "
        "is running on this database; it will be retried",
    )


def _pg_lock(conn: sa.Connection, timeout: float, on_wait: Callable[[str], None] | None) -> None:
    got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
    if got:
        return
    unsigned = PG_LOCK_KEY & 0xFFFFFFFFFFFFFFFF
    holder = conn.execute(
        sa.text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = :hi AND objid::bigint = :lo "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
    ).scalar()
    if on_wait:
        on_wait(f"waiting up to {timeout:g} s for the migration lock"
                f" (held by backend pid {holder})")
    if timeout <= 0:
        conn.rollback()
        raise _timed_out(timeout)
    conn.execute(sa.text(f"SET lock_timeout = '{int(timeout * 1000)}ms'"))
    try:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
    except sa.exc.OperationalError as exc:
        conn.rollback()
        if getattr(exc.orig, "pgcode", None) == "55P03":  # lock_not_available
            raise _timed_out(timeout) from None
        raise
    conn.execute(sa.text("RESET lock_timeout"))


def _pg_unlock(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})


def _mysql_name(conn: sa.Connection) -> str:
    database = conn.execute(sa.text("SELECT DATABASE()")).scalar() or ""
    name = f"{LOCK_NAME}:{database}"
    if len(name) > 64:  # GET_LOCK names are limited to 64 characters
        name = f"{LOCK_NAME}:{hashlib.sha1(database.encode()).hexdigest()}"
    return name


def _mysql_lock(conn: sa.Connection, timeout: float, on_wait: Callable[[str], None] | None) -> None:
    name = _mysql_name(conn)
    got = conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar()
    if got == 1:
        return
    holder = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
    if on_wait:
        on_wait(f"waiting up to {timeout:g} s for the migration lock (held by connection {holder})")
    if timeout <= 0 or conn.execute(
        sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": timeout}
    ).scalar() != 1:
        raise _timed_out(timeout)


def _mysql_unlock(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": _mysql_name(conn)})


@contextmanager
def _file_lock(
    conn: sa.Connection, timeout: float, on_wait: Callable[[str], None] | None
) -> Iterator[None]:
    database = conn.engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database cannot be shared
        return
    lock_path = Path(database).with_name(Path(database).name + ".migration-lock")
    with open(lock_path, "a+b") as handle:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait:
                    on_wait(f"waiting up to {timeout:g} s for the migration lock ({lock_path})")
                waited = True
                if time.monotonic() >= deadline:
                    raise _timed_out(timeout) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
