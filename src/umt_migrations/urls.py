"""Database URLs: one place that normalises drivers and hides passwords.

Every URL that reaches a log line, a report, an exception message or a status passes through
:func:`mask_url` or :func:`scrub`. Nothing else in the code base renders a URL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # SQLAlchemy is imported on use: the operator needs only `scrub`
    from sqlalchemy.engine import URL

#: Driver chosen for URLs written without one (``postgresql://``, ``mysql://``). These are the
#: drivers the project installs; SQLAlchemy 2.1 would otherwise pick psycopg 3 and mysqlclient.
DEFAULT_DRIVERS = {
    "postgresql": "psycopg2",
    "postgres": "psycopg2",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}

_URL_IN_TEXT = re.compile(r"\b([a-z][a-z0-9+.\-]*://)([^\s:/@'\"]+):([^\s@'\"]*)@", re.IGNORECASE)
_PASSWORD_ASSIGN = re.compile(r"(password\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s,;)]+)", re.IGNORECASE)

MASK = "***"


class InvalidURL(ValueError):  # noqa: N818 - named for the problem, like StopIteration
    """A database URL that SQLAlchemy cannot parse. The message never contains the URL."""


def parse_url(raw: str) -> URL:
    """Parse ``raw`` and pick the project's driver when the URL names none."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError) as exc:
        raise InvalidURL(
            "database URL is not valid; expected e.g. postgresql://user:pass@host:5432/db"
        ) from exc
    backend, _, driver = url.drivername.partition("+")
    if not driver and backend in DEFAULT_DRIVERS:
        backend = "postgresql" if backend == "postgres" else backend
        url = url.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    return url


def normalize_url(raw: str) -> str:
    """The URL as a string SQLAlchemy can connect with, password kept (never log this)."""
    return parse_url(raw).render_as_string(hide_password=False)


def mask_url(raw: str | URL) -> str:
    """The URL with its password replaced by ``***``; safe for logs, reports and status."""
    url = _lenient(raw)
    return scrub(str(raw)) if url is None else url.render_as_string(hide_password=True)


def describe_target(raw: str | URL) -> str:
    """Short human name for a database: ``postgresql://host:5432/db`` (no user, no password)."""
    url = _lenient(raw)
    if url is None:
        return "<invalid URL>"
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:///{url.database or ':memory:'}"
    port = f":{url.port}" if url.port else ""
    return f"{backend}://{url.host or 'localhost'}{port}/{url.database or ''}"


def scrub(text: str, *secrets: str | None) -> str:
    """Remove passwords from free text (driver errors, tracebacks, SQL).

    Hides the password part of anything that looks like a URL, ``password=...`` assignments,
    and every literal secret passed in (the password of the URL in use, for instance).
    """
    text = _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
    text = _PASSWORD_ASSIGN.sub(lambda m: f"{m.group(1)}{MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def password_of(raw: str | URL | None) -> str | None:
    """The password of a URL, for :func:`scrub`; None when there is none or it can't parse."""
    url = None if raw is None else _lenient(raw)
    return None if url is None else url.password


def _lenient(raw: str | URL) -> URL | None:
    """``raw`` parsed as it is (no driver chosen), or None when it is not a URL."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(raw, URL):
        return raw
    try:
        return make_url(str(raw).strip())
    except (ArgumentError, ValueError):
        return None
