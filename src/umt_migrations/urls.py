"""Database URLs: parsing with the project's drivers, and short names for messages.

Nothing here renders a password: messages name a database with :func:`describe_target`, and
any other text goes through :func:`umt_migrations.masking.scrub` (the one masking module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from .masking import split_credentials

if TYPE_CHECKING:  # SQLAlchemy is imported on use: the operator needs none of this
    from sqlalchemy.engine import URL

#: Driver chosen for URLs written without one (``postgresql://``, ``mysql://``). These are the
#: drivers the project installs; SQLAlchemy 2.1 would otherwise pick psycopg 3 and mysqlclient.
DEFAULT_DRIVERS = {
    "postgresql": "psycopg2",
    "postgres": "psycopg2",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}

RAW_AT = (
    "database URL is ambiguous: a raw '@' follows the host (in the database name or the "
    "query) and the password may hold one too; write each '@' but the one before the host "
    "as %40"
)


class InvalidURL(ValueError):  # noqa: N818 - named for the problem, like StopIteration
    """A database URL that SQLAlchemy cannot parse. The message never contains the URL."""


def parse_url(raw: str) -> URL:
    """Parse ``raw`` and pick the project's driver when the URL names none.

    A password may hold a raw ``@``: the user name and password end at the last ``@`` before
    the host (``postgresql://u:ab@cd@db/x`` is user ``u``, password ``ab@cd``, host ``db``),
    where SQLAlchemy alone would take ``cd@db`` for the host and send part of the password to
    a name server. When a raw ``@`` also follows the host (database name, query), the URL has
    two readings and is refused: :data:`RAW_AT`.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(_credentials_resplit(raw.strip()))
    except (ArgumentError, ValueError) as exc:
        if isinstance(exc, InvalidURL):
            raise
        raise InvalidURL(
            "database URL is not valid; expected e.g. postgresql://user:pass@host:5432/db"
        ) from exc
    backend, _, driver = url.drivername.partition("+")
    if not driver and backend in DEFAULT_DRIVERS:
        backend = "postgresql" if backend == "postgres" else backend
        url = url.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    return url


def _credentials_resplit(text: str) -> str:
    """``text`` with its user name and password percent-encoded when they hold a raw ``@``
    (split at the last ``@`` before the host); :class:`InvalidURL` when that is ambiguous."""
    scheme, sep, rest = text.partition("://")
    split = split_credentials(rest) if sep and "@" in rest else None
    if split is None:
        return text
    user, colon, password = split.userinfo.partition(":")
    if colon and "@" in split.after:
        raise InvalidURL(RAW_AT)
    if not split.resplit:
        return text
    encoded = quote(unquote(user), safe="")
    if colon:
        encoded += ":" + quote(unquote(password), safe="")
    return f"{scheme}://{encoded}@{split.after}"


def normalize_url(raw: str) -> str:
    """The URL as a string SQLAlchemy can connect with, password kept (never log this)."""
    return parse_url(raw).render_as_string(hide_password=False)


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


def password_of(raw: str | URL | None) -> str | None:
    """The password of a URL, for :func:`~umt_migrations.masking.scrub`; None when there is
    none or it cannot be parsed."""
    url = None if raw is None else _lenient(raw)
    return None if url is None else url.password


def _lenient(raw: str | URL) -> URL | None:
    """``raw`` parsed as :func:`parse_url` reads it (no driver chosen), or None."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(raw, URL):
        return raw
    try:
        return make_url(_credentials_resplit(str(raw).strip()))
    except (ArgumentError, ValueError):
        return None
