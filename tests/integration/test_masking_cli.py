"""Masking is total on the command line (issue "Status that never lies", finding 4).

Each example runs the real commands in-process (``umt_migrations.cli.main``) with a password
hypothesis draws from every printable character, written raw into the URL as a user may
paste it: ``migrate`` (its output, its JSON report and its log) against a port nobody listens
on, ``wait-for-schema`` and ``current`` there too, and ``current -v`` against the real
PostgreSQL (which trusts local connections, so Alembic's own "Current revision(s) for …"
line is printed), with the password in the user information and in ``?password=``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from tests.conftest import REPO_ROOT
from tests.unit.test_masking import PASSWORDS, USER, assert_hidden
from umt_migrations.cli import main

pytestmark = pytest.mark.integration

UNREACHABLE = "127.0.0.1:1"


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    """Standard output, standard error and every log record, as one text."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    loggers = [logging.getLogger(), logging.getLogger("umt_migrations")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            yield text
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def run(*argv: str) -> tuple[int, str]:
    with captured() as text:
        code = main(list(argv))
    return code, text.getvalue()


def outputs(password: str, server: str) -> list[str]:
    """Everything the commands show for ``password`` (``server``: a reachable database)."""
    unreachable = f"postgresql://{USER}:{password}@{UNREACHABLE}/umt"
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        code, text = run("migrate", "--to", "head", "--url", unreachable, "--report", str(report))
        assert code in (1, 2), text  # unreachable, or an ambiguous URL refused
        found += [text, report.read_text()]
    for argv in (["wait-for-schema", "--timeout", "0"], ["current"]):
        code, text = run(*argv, "--url", unreachable)
        assert code != 0, text
        found.append(text)
    database = sa.make_url(server)
    host = f"{database.host}:{database.port}"
    for url in (f"postgresql://postgres:{password}@{host}/{database.database}",
                f"postgresql://postgres@{host}/{database.database}?password="
                f"{quote(password, safe='')}"):
        found.append(run("current", "-v", "--url", url)[1])
    return found


@cache
def baseline(server: str) -> str:
    return "\n".join(outputs("Zq", server))


@pytest.fixture(scope="module")
def server(pg_factory) -> str:  # type: ignore[no-untyped-def]
    return pg_factory.create("umt_mask")


def test_finding_4_as_reported(server: str) -> None:
    """The issue's URL: before, ``…cd@SeCrEt9@…`` in the message and the report."""
    texts = outputs("ab@cd@SeCrEt9", server)
    assert_hidden("ab@cd@SeCrEt9", *texts)
    assert "SeCrEt9" not in "".join(texts)
    assert f"cannot reach the database at postgresql://{UNREACHABLE}/umt" in texts[0]
    assert "Current revision(s) for postgresql+psycopg2://***@" in texts[-2]
    assert "?password=***" in texts[-1]


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS)
def test_no_printable_password_survives_the_command_line(server: str, password: str) -> None:
    assert_hidden(password, *outputs(password, server), baseline=baseline(server))


def test_a_process_shows_no_password_either(tmp_path: Path) -> None:
    """The console script as a Job runs it: stdout, stderr and the report file."""
    url = f"postgresql://{USER}:ab@cd@SeCrEt9@{UNREACHABLE}/umt"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "umt-migrations"), "migrate", "--to", "head",
         "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    assert_hidden("ab@cd@SeCrEt9", proc.stdout, proc.stderr, (tmp_path / "r.json").read_text())
    assert "SeCrEt9" not in proc.stdout + proc.stderr


def test_a_project_that_prints_its_url_shows_no_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's env.py that prints the URL and then fails with it, with and without
    ``UMT_MIGRATIONS_DEBUG`` (the traceback goes through the masked stream too)."""
    shutil.copytree(REPO_ROOT / "migrations", tmp_path / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "alembic.ini", tmp_path)
    env_py = tmp_path / "migrations" / "env.py"
    env_py.write_text(env_py.read_text().replace(
        "\nimport os\n", "\nimport os\nprint('using', os.environ['DATABASE_URL'])\n"
        "raise RuntimeError('cannot use ' + os.environ['DATABASE_URL'])\n", 1))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{USER}:Tr0ub4dor&3@{UNREACHABLE}/umt")
    for debug in ("", "1"):
        monkeypatch.setenv("UMT_MIGRATIONS_DEBUG", debug)
        code, text = run("current")
        assert code == 1
        assert "cannot use postgresql://***@127.0.0.1:1/umt" in text
        assert "using postgresql://***@127.0.0.1:1/umt" in text
        assert_hidden("Tr0ub4dor&3", text)
    assert "Traceback" in text
