"""Masking is total (issue "Status that never lies", finding 4): no password survives any path.

One module masks (:mod:`umt_migrations.masking`); these tests hold each pure path to it with
examples and with passwords that hypothesis draws from every printable character: the text
rules on their own, the operator's status and Event message, the waiter's lines and outcome,
and log records. ``tests/integration/test_masking_cli.py`` does the same for the command line.
"""

from __future__ import annotations

import io
import json
import logging
import string
from typing import Any
from unittest.mock import patch
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from umt_migrations.masking import (
    MaskedStream,
    mask_log_records,
    mask_url,
    scrub,
    secrets_of,
    secrets_of_urls,
)
from umt_migrations.waiter import Tracker
from umt_operator.status import compute_status, event_message_for_failure, observe_job

pytestmark = pytest.mark.unit

#: A user name no message contains by chance: the whole user information must go, so it
#: must never be seen, whatever the password next to it.
USER = "umtmaskuser"

#: Printable characters (``str.isprintable``: space included, no line breaks), ASCII
#: punctuation drawn more often: the characters that end parts of a URL.
PASSWORD_CHARS = st.one_of(
    st.sampled_from(string.punctuation + " "),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xA1, max_codepoint=0x2FFF).filter(str.isprintable),
)
PASSWORDS = st.text(PASSWORD_CHARS, min_size=1, max_size=20)
PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def url_with(password: str, host: str = "db.example:5432") -> str:
    """A database URL with ``password`` written raw, as a user may paste it."""
    return f"postgresql://{USER}:{password}@{host}/umt"


def assert_hidden(password: str, *texts: str, baseline: str = "") -> None:
    """Neither the user information nor the password (in any form a URL may show it) is in
    ``texts``. A short password is a few common characters: it is looked for only when it
    is not also in ``baseline``, the same output for a harmless password."""
    text = "\n".join(texts)
    assert USER not in text, text
    assert f":{password}@" not in text, text
    for form in {password, quote(password, safe=""), quote(password, safe=" +")}:
        if len(form) >= 4 and form not in baseline:
            assert form not in text, (form, text)


# --- the rules, by example -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # finding 4: SQLAlchemy reads the password as "ab"; the whole user information goes
    ("at postgresql://postgres:ab@cd@SeCrEt9@127.0.0.1:5432/postgres: refused",
     "at postgresql://***@127.0.0.1:5432/postgres: refused"),
    ("postgresql://u:p@h/db", "postgresql://***@h/db"),  # a one-character password
    ("mysql+pymysql://root:a/b:c@db:3306/x", "mysql+pymysql://***@db:3306/x"),
    ("postgresql://u:two words@h/db", "postgresql://***@h/db"),
    ("'postgresql://u:it's@h/db'", "'postgresql://***@h/db'"),
    ("postgresql://u:p@[::1]:5432/db", "postgresql://***@[::1]:5432/db"),
    ("postgresql://u:p@/db?host=/run/postgresql", "postgresql://***@/db?host=/run/postgresql"),
    ("Current revision(s) for postgresql://postgres@h/db?password=SeCrEt9:",
     "Current revision(s) for postgresql://***@h/db?password=***"),
    ("postgresql://h/db?sslmode=require&passwd=SeCrEt9&x=1",
     "postgresql://h/db?sslmode=require&passwd=***&x=1"),
    ("host=db user=u password='se cret' dbname=x", "host=db user=u password=*** dbname=x"),
    ("PWD=SeCrEt9; Server=db", "PWD=*** Server=db"),  # ";" may be in a password: it goes
    ("already masked: postgresql://***@h/db", "already masked: postgresql://***@h/db"),
    ("sqlite:////srv/a@b/umt.db", "sqlite:////srv/a@b/umt.db"),  # a path, no credentials
    ("no credentials: postgresql://h:5432/db and https://sqlalche.me/e/20/e3q8",
     "no credentials: postgresql://h:5432/db and https://sqlalche.me/e/20/e3q8"),
])
def test_text_rules(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert scrub(expected) == expected  # masking masked text changes nothing


def test_mask_url_hides_the_whole_user_information() -> None:
    assert mask_url("postgresql://bob:s3cr%40t@db:5432/umt") == "postgresql://***@db:5432/umt"
    assert mask_url(" sqlite:///umt.db ") == "sqlite:///umt.db"


def test_secrets_of_a_url_cover_every_reading_of_a_raw_at() -> None:
    found = secrets_of("postgresql://postgres:ab@cd@SeCrEt9@127.0.0.1:5432/postgres")
    assert "ab@cd@SeCrEt9" in found  # the last '@' before the host ends the password
    assert "ab" in found  # SQLAlchemy's reading
    assert "postgres" not in found  # a user name alone is no secret
    assert secrets_of("postgresql://u@h/db?password=a%26b") == ["a&b", "a%26b"]


def test_a_known_secret_is_masked_anywhere_only_while_in_use() -> None:
    text = "the driver said: authentication with 'Tr0ub4dor&3' failed"
    with secrets_of_urls(f"postgresql://u:{quote('Tr0ub4dor&3')}@h/db"):
        assert "Tr0ub4dor" not in scrub(text)
    assert scrub(text) == text


@pytest.mark.parametrize("url", [
    "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
    "postgresql://umt:umt@db:5432/umt",
])
def test_a_password_the_url_shows_anyway_does_not_hide_every_name(url: str) -> None:
    """``postgres:postgres`` is a common development URL: hiding "postgres" everywhere would
    turn every message into ``***ql://…/***``. Its credentials still go by their shape."""
    text = f"cannot reach the database at postgresql://db:5432/umt\nusing {url}"
    with secrets_of_urls(url):
        masked = scrub(text)
    assert masked.startswith("cannot reach the database at postgresql://db:5432/umt\nusing ")
    assert ":postgres@" not in masked and ":umt@" not in masked


def test_masked_stream_masks_whole_lines_across_writes() -> None:
    target = io.StringIO()
    stream = MaskedStream(target)
    for piece in ("connecting to postgresql://u:Se", "Cr", "Et9@h/db\n", "postgresql://u:x@"):
        stream.write(piece)
    assert target.getvalue() == "connecting to postgresql://***@h/db\n"
    stream.write("h/db")
    stream.flush()
    assert target.getvalue().endswith("postgresql://***@h/db")


# --- every path, every printable password ------------------------------------------------------


def text_rule_outputs(password: str) -> list[str]:
    lines = [
        f"could not connect to {url_with(password)}",
        f"{url_with(password)}: refused",
        f'engine = create_engine("{url_with(password, "10.0.0.7")}")',
        f"Current revision(s) for postgresql://{USER}@h/db?password={quote(password, safe='')}:",
    ]
    return [scrub(line) for line in lines]


@PROPERTY
@given(password=PASSWORDS)
def test_the_text_rules_alone_hide_any_password(password: str) -> None:
    """What the operator and the waiter have: text only, no idea which password it holds."""
    assert_hidden(password, *text_rule_outputs(password),
                  baseline="\n".join(text_rule_outputs("Zq")))


def failed_job_with(report_message: str | None, log: str | None) -> tuple[dict, list[dict]]:
    """A failed Job and its pod, whose termination message is a runner report or a log."""
    message = log
    if report_message is not None:
        message = json.dumps({"ok": False, "direction": "none", "applied": [],
                              "error": {"reason": "DatabaseUnavailable",
                                        "message": report_message}})
    job = {"metadata": {"name": "umt-schema-3-k2x9", "namespace": "umt"},
           "status": {"failed": 1, "conditions": [
               {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}}
    pod = {"metadata": {"name": "umt-schema-3-k2x9-x7p2q", "namespace": "umt",
                        "labels": {"batch.kubernetes.io/job-name": "umt-schema-3-k2x9"}},
           "status": {"phase": "Failed", "containerStatuses": [{
               "name": "migrate", "state": {"terminated": {
                   "exitCode": 1, "reason": "Error", "message": message}}}]}}
    return job, [pod]


def operator_texts(text: str) -> list[str]:
    """The status (message and conditions) and the Event message for a run that failed with
    ``text`` in its report, and again with ``text`` as the log the kubelet kept."""
    from datetime import UTC, datetime

    texts = []
    for report_message, log in ((text, None), (None, f"Traceback ...\n{text}\n")):
        job, pods = failed_job_with(report_message, log)
        status = compute_status(generation=3, previous_status={}, job_name="umt-schema-3-k2x9",
                                job=job, pods=pods, spec_target="head", image="umt:1",
                                now=datetime(2025, 3, 1, tzinfo=UTC))
        texts.append(json.dumps(status))
        texts.append(event_message_for_failure("umt-schema-3-k2x9", observe_job(job, pods)))
    return texts


@PROPERTY
@given(password=PASSWORDS)
def test_the_operator_status_and_event_hide_any_password(password: str) -> None:
    def text(secret: str) -> str:
        return f"cannot reach the database at {url_with(secret)}: connection refused"

    baseline = "\n".join(operator_texts(text("Zq")))
    assert_hidden(password, *operator_texts(text(password)), baseline=baseline)


def posted_event(message: str) -> str:
    """The message of the Event the operator posts with ``message`` (kopf's poster replaced
    by a recorder: the operator's own path up to kopf is what is checked)."""
    import kopf

    from umt_operator import events

    posted: list[str] = []
    body = {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "metadata": {"name": "umt-schema", "namespace": "umt", "uid": "u1"}}
    with patch.object(kopf, "event", lambda *_, message, **__: posted.append(message)):
        events.post(body, "Warning", "InvalidSpec", message)
    assert len(posted) == 1
    return posted[0]


@PROPERTY
@given(password=PASSWORDS)
def test_every_event_hides_any_password(password: str) -> None:
    def message(secret: str) -> str:
        return f"pod cannot start: {url_with(secret)}\nrefused"

    assert_hidden(password, posted_event(message(password)), baseline=posted_event(message("Zq")))


def waiter_texts(message: str) -> list[str]:
    """The waiter's progress lines and last line for a status carrying ``message``."""
    obj: dict[str, Any] = {
        "metadata": {"generation": 3}, "spec": {"targetRevision": "head"},
        "status": {"observedGeneration": 3, "phase": "Failed", "message": message,
                   "conditions": [{"type": "Stalled", "status": "True", "observedGeneration": 3,
                                   "reason": "DatabaseUnavailable"}]}}
    tracker = Tracker("umt/umt-schema", 3, started=0.0)
    lines = tracker.observe("MODIFIED", obj)
    assert tracker.outcome is not None
    return [*lines, tracker.outcome.line, tracker.last_seen()]


@PROPERTY
@given(password=PASSWORDS)
def test_the_waiter_hides_any_password_in_a_status(password: str) -> None:
    """A status written by anyone (an older operator, a person with kubectl)."""
    def message(secret: str) -> str:
        return f"DatabaseUnavailable: at {url_with(secret)}\nsee the log"

    baseline = "\n".join(waiter_texts(message("Zq")))
    texts = waiter_texts(message(password))
    assert_hidden(password, *texts, baseline=baseline)
    assert all("\n" not in line for line in texts)


@PROPERTY
@given(password=PASSWORDS)
def test_log_records_hide_any_password(password: str) -> None:
    """Every record, on any logger and handler, with the URL in its arguments or traceback."""
    mask_log_records()
    assert_hidden(password, logged(password), baseline=logged("Zq"))


def logged(password: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.masking.any")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting to %s", url_with(password))
        try:
            raise ValueError(f"bad URL {url_with(password)}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()
