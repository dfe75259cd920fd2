"""SIGTERM (a pod being evicted) stops the run and rolls back the revision in progress.

The Python handler raises :class:`Interrupted`, which unwinds through Alembic's transaction
blocks and rolls the current revision back. Python runs that handler only between bytecodes,
so a statement blocked inside the driver would finish first; hence a watcher thread, woken by
``signal.set_wakeup_fd`` the instant the signal lands, cancels the statements in flight on
every database connection of the process (the runner's and any ``env.py`` opened), through
the driver's thread-safe cancel. The statement fails at once, and the handler then raises.
Nothing here costs anything per statement.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import Pool

_state = {"fired": False}
#: How long the main thread may take to notice SIGTERM before the run is ended for it.
STUCK_SECONDS = 1.0
_connections: weakref.WeakSet[Any] = weakref.WeakSet()


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives during a run."""


def was_interrupted() -> bool:
    """True once SIGTERM arrived during the current guarded run."""
    return _state["fired"]


def _handle(signum: int, frame: FrameType | None) -> None:
    if _state["fired"]:
        return  # already unwinding; a second signal must not interrupt the rollback
    _state["fired"] = True
    raise Interrupted()


def _track(dbapi_connection: Any, _record: Any) -> None:
    if hasattr(dbapi_connection, "cancel"):  # only drivers that can cancel need tracking
        _connections.add(dbapi_connection)


def _cancel_all() -> None:
    """Cancel what every open connection is executing (psycopg2: PQcancel, thread-safe)."""
    for connection in list(_connections):
        cancel = getattr(connection, "cancel", None)
        if cancel is None:
            continue  # PyMySQL, sqlite3: the handler interrupts them between reads
        with contextlib.suppress(Exception):  # closed meanwhile: nothing to cancel
            cancel()


@contextmanager
def sigterm_guard(on_stuck: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` for the duration of the block.

    When the main thread is stuck inside a C call that neither a cancel nor the signal ends
    (libpq connecting: it loops inside C until connected or timed out; a DNS lookup), so that
    the handler has not run :data:`STUCK_SECONDS` after the signal, the watcher calls
    ``on_stuck`` (the runner writes its report there) and ends the process with exit 1.
    """
    _state["fired"] = False
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (library use from a worker thread)
        return
    sa.event.listen(Pool, "connect", _track)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.signal(signal.SIGTERM, _handle)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher = threading.Thread(
        target=_watch, args=(read_end, on_stuck), name="sigterm-watch", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous)
        os.close(write_end)  # ends the watcher
        watcher.join(timeout=5)
        os.close(read_end)
        sa.event.remove(Pool, "connect", _track)


def _watch(read_end: int, on_stuck: Callable[[], None] | None) -> None:
    while True:
        data = os.read(read_end, 64)
        if not data:  # the guard closed the pipe
            return
        if signal.SIGTERM in data:
            _cancel_all()
            deadline = time.monotonic() + STUCK_SECONDS
            while not _state["fired"] and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _state["fired"]:  # the main thread cannot run the handler: end it here
                if on_stuck is not None:
                    with contextlib.suppress(Exception):
                        on_stuck()
                os._exit(1)

