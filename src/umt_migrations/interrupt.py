"""SIGTERM (a pod being evicted) stops the run and rolls back the revision in progress.

The handler raises :class:`Interrupted`, which unwinds through Alembic's transaction blocks
(rolling the current revision back). On PostgreSQL a query may be running inside libpq, where
Python cannot raise; psycopg2's ``wait_select`` callback waits in Python instead, and on
``KeyboardInterrupt`` (which :class:`Interrupted` is) cancels the query on the server, so even
a long statement stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_state = {"fired": False}


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


@contextmanager
def sigterm_guard(backend: str) -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` for the duration of the block."""
    _state["fired"] = False
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (library use from a worker thread)
        return
    previous = signal.signal(signal.SIGTERM, _handle)
    wait_callback = _psycopg2_wait_callback(backend, enable=True)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if wait_callback:
            _psycopg2_wait_callback(backend, enable=False)


def _psycopg2_wait_callback(backend: str, *, enable: bool) -> bool:
    if backend != "postgresql":
        return False
    try:
        import psycopg2.extensions
        import psycopg2.extras
    except ImportError:  # another PostgreSQL driver: statements finish before the signal acts
        return False
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select if enable else None)
    return True
