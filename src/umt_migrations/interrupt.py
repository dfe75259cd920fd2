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
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import Pool

_state = {"fired": False, "guarded": False}
T = TypeVar("T")
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
def sigterm_guard() -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` for the duration of the block."""
    _state["fired"] = False
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (library use from a worker thread)
        return
    sa.event.listen(Pool, "connect", _track)
    _state["guarded"] = True
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.signal(signal.SIGTERM, _handle)
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read_end,), name="sigterm-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        _state["guarded"] = False
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGTERM, previous)
        os.close(write_end)  # ends the watcher
        watcher.join(timeout=5)
        os.close(read_end)
        sa.event.remove(Pool, "connect", _track)


def _watch(read_end: int) -> None:
    while True:
        data = os.read(read_end, 64)
        if not data:  # the guard closed the pipe
            return
        if signal.SIGTERM in data:
            _cancel_all()


def connect_interruptibly(connect: Callable[[], T]) -> T:
    """Run a blocking driver connect so that SIGTERM still ends the run at once.

    libpq's connect loops inside C until it connects or times out, so Python's handler would
    run only then (up to the connect timeout later, or never without one). Inside the guard
    the connect runs in a helper thread and the main thread waits in short, interruptible
    steps; a connection that arrives after the run was interrupted is closed.
    """
    if not _state["guarded"] or threading.current_thread() is not threading.main_thread():
        return connect()
    box: dict[str, Any] = {}
    lock = threading.Lock()
    done = threading.Event()

    def work() -> None:
        try:
            result: Any = connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        else:
            with lock:
                if box.get("abandoned"):
                    result.close()
                else:
                    box["result"] = result
        finally:
            done.set()

    threading.Thread(target=work, name="db-connect", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except BaseException:
        with lock:
            box["abandoned"] = True
            if "result" in box:
                box["result"].close()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
