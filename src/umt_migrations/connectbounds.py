"""Every connection the process opens is bounded: connect timeout and TCP keepalives.

Installed for the length of a command as class-level SQLAlchemy events, so the engines a
project's own ``env.py`` creates from ``sqlalchemy.url`` are bounded too, not only ours:

- ``do_connect`` adds the driver's connect timeout and keepalives (parameters the URL already
  names win). libpq: ``connect_timeout``, ``keepalives_idle/interval/count`` and
  ``tcp_user_timeout``. PyMySQL: ``connect_timeout`` for the TCP connect and, as its read
  timeout, for the server's greeting too (a server that accepts and never answers).
- ``connect`` (the pool's) lifts that read timeout and sets the keepalives on PyMySQL's
  socket.

So a server that never answers fails the connect in ``connect_timeout``, and a peer that
vanishes mid-statement (a cut network) fails it in about ``idle + interval * count`` seconds
instead of the operating system's two hours. Only parameters are added, and no connection is
made here, so a project's own ``do_connect`` listener (a cloud IAM token as the password, say)
still runs after this one.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import Pool

from .safety import DEFAULT_CONNECT_TIMEOUT

KEEPALIVE_IDLE = 10  #: seconds of silence before the first probe
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3


@dataclass(frozen=True)
class ConnectBounds:
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    keepalive_idle: int = KEEPALIVE_IDLE
    keepalive_interval: int = KEEPALIVE_INTERVAL
    keepalive_count: int = KEEPALIVE_COUNT

    @property
    def dead_peer_seconds(self) -> int:
        """About how long a vanished peer takes to notice."""
        return self.keepalive_idle + self.keepalive_interval * self.keepalive_count


_active: list[ConnectBounds] = []
_LIFT_READ_TIMEOUT = "umt_lift_read_timeout"


@contextmanager
def bounded_connections(bounds: ConnectBounds | None = None) -> Iterator[ConnectBounds]:
    """Bound every connection opened in the ``with`` block (nested blocks: the innermost)."""
    bounds = bounds or ConnectBounds()
    first = not _active
    _active.append(bounds)
    if first:
        sa.event.listen(sa.Engine, "do_connect", _do_connect)
        sa.event.listen(Pool, "connect", _after_connect)
    try:
        yield bounds
    finally:
        _active.pop()
        if first:
            sa.event.remove(sa.Engine, "do_connect", _do_connect)
            sa.event.remove(Pool, "connect", _after_connect)


def _do_connect(dialect: Any, record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    bounds = _active[-1] if _active else ConnectBounds()
    driver = dialect.driver
    if driver == "psycopg2":
        timeout = max(2, math.ceil(bounds.connect_timeout))  # libpq: whole seconds, 2 at least
        for key, value in (
            ("connect_timeout", timeout),
            ("keepalives", 1),
            ("keepalives_idle", bounds.keepalive_idle),
            ("keepalives_interval", bounds.keepalive_interval),
            ("keepalives_count", bounds.keepalive_count),
            ("tcp_user_timeout", bounds.dead_peer_seconds * 1000),
        ):
            cparams.setdefault(key, value)
    elif driver == "pymysql":
        cparams.setdefault("connect_timeout", bounds.connect_timeout)
        if "read_timeout" not in cparams:  # PyMySQL reads the server's greeting with it
            cparams["read_timeout"] = bounds.connect_timeout
            record.info[_LIFT_READ_TIMEOUT] = True


def _after_connect(dbapi_connection: Any, record: Any) -> None:
    if record.info.pop(_LIFT_READ_TIMEOUT, False):
        # a long DDL statement is silent for minutes: keepalives bound a dead peer instead
        dbapi_connection._read_timeout = None
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL; libpq sets its own
    if not _active or not isinstance(sock, socket.socket) or sock.family == socket.AF_UNIX:
        return
    bounds = _active[-1]
    options = (
        ("TCP_KEEPIDLE", bounds.keepalive_idle),
        ("TCP_KEEPINTVL", bounds.keepalive_interval),
        ("TCP_KEEPCNT", bounds.keepalive_count),
        ("TCP_USER_TIMEOUT", bounds.dead_peer_seconds * 1000),
    )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in options:
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:  # not a TCP socket after all
        pass
