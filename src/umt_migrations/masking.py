"""Masking: the one module that takes passwords out of text before anyone sees it.

Every message the project prints, writes into a report, a status, an Event or a log passes
through :func:`scrub`; the command line also routes its standard streams
(:func:`masked_streams`) and every log record (:func:`mask_log_records`) through it, so text
written by Alembic, a driver or a project's own ``env.py`` is masked too. Standard library
only: the operator's pure status code imports it without SQLAlchemy.

What is masked (README, "Passwords"):

1. **URL credentials.** In ``scheme://USERINFO@host…`` the whole USERINFO, user name and
   password, becomes ``***``. A password may hold a raw ``@``, ``:``, ``/`` or a space, so
   USERINFO runs to the *last* ``@`` on the line that is followed by something shaped like a
   host (``[IPv6]`` or host characters, an optional ``:port``, then the end, a path, a query, a
   space or punctuation). When an address-like ``x@y`` follows a URL on the same line, more
   than the credentials may go: masking errs on the side of hiding.
2. **Password parameters.** The value of ``password=``, ``passwd=`` and ``pwd=``: in a URL's
   query (``?password=…``, to the next ``&`` or the end of the line) and in keyword strings
   (``password=… host=…``, to the next space, or the closing quote).
3. **The process's own secrets**, literally, wherever they appear: the user information and
   password of every URL given to :func:`secrets_of_urls` (the command line gives it the URL it
   was asked to use), as written, percent-decoded and percent-encoded. Strings shorter than
   :data:`MIN_LITERAL` characters, and a password the URL shows anyway as its user, host or
   database name, are left to rules 1 and 2 (replacing every ``a``, or every ``postgres``, of
   a text would hide everything and nothing).

Passwords are taken to be printable (``str.isprintable``: any character from space on, no
line breaks); the property test in ``tests/unit/test_masking.py`` holds every path to that.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, unquote

MASK = "***"
#: Shortest literal secret replaced wherever it appears (rule 3).
MIN_LITERAL = 3

_HOST_AFTER_AT = (
    r"(?=(?:\[[0-9A-Za-z:.%]*\]|[A-Za-z0-9._~%-]*)(?::[0-9]*)?"
    r"(?:[/?#\s\"'<>\\,;)\]}|]|$))"
)
#: ``scheme://`` then credentials up to the last ``@`` on the line before a host; not after
#: ``scheme:///`` (no authority: ``sqlite:////srv/a@b/umt.db`` is a path).
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?!/)(?P<userinfo>[^\r\n]*)@" + _HOST_AFTER_AT
)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&;](?:password|passwd|pwd)=)[^&#\r\n]*", re.I)
_PASSWORD_ASSIGN = re.compile(
    r"""(?P<key>\b(?:password|passwd|pwd)\s*=\s*)
        (?:'(?:[^'\\\r\n]|\\.)*'?|"(?:[^"\\\r\n]|\\.)*"?|[^\s&]+)""",
    re.I | re.X,
)
#: SQLAlchemy's reading of credentials (``sqlalchemy/engine/url.py`` ``_parse_url``): the user
#: name runs to a ``:`` or ``/``, the password to the first ``@``, the host and port to a
#: ``/`` or ``?`` (so a password's extra ``@`` lands in the host).
_FIRST_USERINFO = re.compile(r"(?P<userinfo>[^:/]*(?::[^@]*)?)@(?P<hostport>[^/?]*)")
_PASSWORD_KEYS = frozenset({"password", "passwd", "pwd"})

#: Literal secrets in use (rule 3), counted: nested or concurrent users of one URL.
_known: Counter[str] = Counter()
_known_lock = threading.Lock()


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` without passwords: the rules of this module's docstring, plus ``secrets``
    (database URLs, whose every reading of credentials is hidden, or passwords)."""
    with _known_lock:
        known = set(_known)
    literals = sorted(known | _literals(secrets), key=len, reverse=True)
    for secret in literals:
        text = text.replace(secret, MASK)
    return _by_shape(text)


def _by_shape(text: str) -> str:
    """Rules 1 and 2: credentials and password parameters, recognised by their shape."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m.group('key')}{MASK}", text)
    return _PASSWORD_ASSIGN.sub(lambda m: f"{m.group('key')}{MASK}", text)


def _literals(secrets: Iterable[str | None]) -> set[str]:
    found: set[str] = set()
    for secret in secrets:
        if secret:
            found |= url_literals(secret) if "://" in secret else set(_variants([secret]))
    return {form for form in found if len(form) >= MIN_LITERAL}


def url_literals(raw: str) -> set[str]:
    """The forms of ``raw``'s credentials to hide wherever they appear (rule 3).

    A password the URL shows anyway, as its user, host or database name (``postgres:postgres``,
    ``umt:umt@db/umt``), is left to rules 1 and 2: replacing it everywhere would hide those
    names, and the scheme with them, in every message.
    """
    shown = _by_shape(raw.strip())
    return {form for form in _variants(secrets_of(raw))
            if len(form) >= MIN_LITERAL and form not in shown}


def mask_url(raw: object) -> str:
    """A URL (text, or SQLAlchemy's ``URL``) fit to show: ``postgresql://***@db:5432/umt``."""
    return scrub(str(raw).strip())


@contextmanager
def secrets_of_urls(*urls: str | None) -> Iterator[None]:
    """Mask the credentials of ``urls`` wherever they appear while the block runs."""
    found = {secret for raw in urls if raw for secret in url_literals(raw)}
    with _known_lock:
        _known.update(found)
    try:
        yield
    finally:
        with _known_lock:
            _known.subtract(found)
            for secret in [s for s, count in _known.items() if count <= 0]:
                del _known[secret]


def secrets_of(raw: str) -> list[str]:
    """The user information and passwords ``raw`` may be read to hold, every reading.

    A password with a raw ``@`` makes a URL ambiguous: SQLAlchemy ends the password at the
    first ``@``, a browser at the last. Both readings, and the one that runs to the last ``@``
    before the host, are returned, so none can be shown whatever a library made of the URL.
    """
    found: list[str] = []
    _scheme, sep, rest = raw.strip().partition("://")
    if not sep:
        return found
    for userinfo in _userinfo_readings(rest):
        _user, colon, password = userinfo.partition(":")
        if colon:  # a user name alone is no secret (and masking it would hide too much)
            found += [userinfo, password]
    query = rest.partition("?")[2]
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in _PASSWORD_KEYS:
            found.append(value)
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key.lower() in _PASSWORD_KEYS:
            found.append(value)
    return found


class Credentials(NamedTuple):
    """A URL's part after ``scheme://`` split at the ``@`` that ends its credentials."""

    userinfo: str  #: user name and password, as written
    after: str  #: host, port, database and query, as written
    resplit: bool  #: the password holds a raw ``@``: SQLAlchemy alone would split elsewhere


def split_credentials(rest: str) -> Credentials | None:
    """``rest`` (a URL after ``scheme://``) split at the last ``@`` before the host (a host and
    port hold no ``@``), or None when it names no user.

    ``u:ab@cd@ef@db:5432/x`` gives ``u:ab@cd@ef`` and ``db:5432/x``; an ``@`` in the
    database name or the query is not looked at (see :func:`umt_migrations.urls.parse_url`).
    """
    first = _FIRST_USERINFO.match(rest)
    if first is None:
        return None
    userinfo, hostport = first.group("userinfo"), first.group("hostport")
    extra, at, host = hostport.rpartition("@")
    if not at:
        return Credentials(userinfo, rest[first.end("userinfo") + 1 :], resplit=False)
    return Credentials(f"{userinfo}@{extra}", host + rest[first.end() :], resplit=True)


def _userinfo_readings(rest: str) -> Iterator[str]:
    split = split_credentials(rest)
    if split is not None:
        yield split.userinfo
        first = _FIRST_USERINFO.match(rest)
        if first is not None:
            yield first.group("userinfo")
    if "@" in rest:
        yield rest.rpartition("@")[0]


def _variants(secrets: Iterable[str | None]) -> Iterator[str]:
    """Each secret as written, percent-decoded and percent-encoded (as URLs render it)."""
    for secret in secrets:
        if not secret:
            continue
        decoded = unquote(secret)
        for form in (secret, decoded):
            yield form
            yield " ".join(form.split())  # as one-line messages show it
            yield quote(form, safe="")
            yield quote(form, safe=" +")  # SQLAlchemy's rendering
            yield quote_plus(form)


# --- every log record -------------------------------------------------------------------------

_factory_installed = False


def mask_log_records() -> None:
    """Scrub every log record this process creates, whichever logger or handler it meets
    (Alembic's, SQLAlchemy's, kopf's, a project's ``env.py``). Installed once."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format: logging reports it when emitting
        return
    masked = scrub(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = scrub(text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


# --- the standard streams ---------------------------------------------------------------------


class MaskedStream(io.TextIOBase):
    """A text stream that scrubs each line before passing it on (a partial line on flush)."""

    def __init__(self, target: TextIO, scrubber: Callable[[str], str] = scrub) -> None:
        super().__init__()
        self.target = target
        self._scrub = scrubber
        self._pending = ""

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            self.target.write(self._scrub(lines + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self.target.write(self._scrub(self._pending))
            self._pending = ""
        self.target.flush()


@contextmanager
def masked_streams(stdout: bool = True) -> Iterator[None]:
    """Route ``sys.stderr`` (and ``sys.stdout`` unless ``stdout`` is false: SQL meant for a
    file stays byte for byte) through :class:`MaskedStream` while the block runs."""
    saved = sys.stdout, sys.stderr
    streams = [MaskedStream(sys.stderr)]
    sys.stderr = streams[0]
    if stdout:
        streams.append(MaskedStream(sys.stdout))
        sys.stdout = streams[1]
    try:
        yield
    finally:
        for stream in streams:
            with suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to say
                stream.flush()
        sys.stdout, sys.stderr = saved
