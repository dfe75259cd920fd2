"""``umt-migrations wait-for-schema`` (the app gate) as a process against real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.alembic_projects import linear_chain, make_project
from tests.conftest import REPO_ROOT
from tests.integration.test_cli import HEAD, REVISION_IDS

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "umt_migrations"]


def env_without_database() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "UMT_ALEMBIC_CONFIG", "UMT_MIGRATIONS_DEBUG")}


def gate(url: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config else []
    return subprocess.run([*CLI, "wait-for-schema", "--url", url, *extra, *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env=env_without_database(), check=False)


def upgrade(url: str, revision: str = "head") -> None:
    subprocess.run([*CLI, "upgrade", revision, "--url", url], capture_output=True, text=True,
                   cwd=REPO_ROOT, timeout=120, env=env_without_database(), check=True)


def execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_waits_then_passes_once_another_process_migrates(pg_url: str) -> None:
    proc = subprocess.Popen([*CLI, "wait-for-schema", "--url", pg_url, "--timeout", "120",
                             "--interval", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
                            env=env_without_database())
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed before its first pause: it is waiting now
        assert first == f"waiting: the database has no revision yet (empty); expected head {HEAD}\n"
        assert proc.poll() is None
        assert tables(pg_url) == []  # reading the revision created nothing
        upgrade(pg_url, REVISION_IDS[1])
        upgrade(pg_url)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert out.splitlines()[-1] == f"the database is at this image's head {HEAD}: starting"
    assert "INFO" not in err  # no per-check chatter from Alembic


def test_passes_at_head_at_once(pg_url: str) -> None:
    upgrade(pg_url)
    proc = gate(pg_url, "--timeout", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"the database is at this image's head {HEAD}: starting\n"


def test_passes_on_a_newer_revision_this_image_does_not_know(pg_url: str) -> None:
    upgrade(pg_url)
    newer = HEAD[:6] + "ffffff"  # unknown, and not mistaken for a prefix of a known id
    execute(pg_url, f"UPDATE alembic_version SET version_num = '{newer}'")
    proc = gate(pg_url, "--timeout", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"the database is at {newer}, a revision this image's scripts do not know (a newer "
        f"schema; this image's head {HEAD}): starting")


def test_times_out_naming_both_revisions(pg_url: str) -> None:
    upgrade(pg_url, REVISION_IDS[1])
    proc = gate(pg_url, "--timeout", "1", "--interval", "0.2")
    assert proc.returncode == 4
    assert proc.stdout == f"waiting: the database is at {REVISION_IDS[1]}; expected head {HEAD}\n"
    error = proc.stderr.strip()
    assert error.startswith(f"error: timed out after 1 s: the database is at {REVISION_IDS[1]}; "
                            f"expected head {HEAD}. ")
    assert "Traceback" not in proc.stderr


def test_unreachable_database_retries_then_times_out_without_the_password() -> None:
    url = "postgresql://app:Sup3rSecret@127.0.0.1:9/umt"
    proc = gate(url, "--timeout", "1", "--interval", "0.2")
    assert proc.returncode == 4
    assert "cannot read the database at postgresql://127.0.0.1:9/umt" in proc.stdout
    assert f"expected head {HEAD}" in proc.stderr
    assert "Sup3rSecret" not in proc.stdout + proc.stderr


def test_reads_a_foreign_projects_renamed_version_table(pg_url: str, tmp_path: Path) -> None:
    revs = linear_chain(2)
    ini = make_project(tmp_path / "project", revs, env_style="custom_version_table")
    proc = gate(pg_url, "--timeout", "0", config=ini)
    assert proc.returncode == 4 and "no revision yet" in proc.stdout
    subprocess.run([*CLI, "migrate", "--to", "head", "--url", pg_url, "--config", str(ini),
                    "--report", str(tmp_path / "report.json")], capture_output=True,
                   cwd=REPO_ROOT, timeout=120, env=env_without_database(), check=True)
    assert "schema_history" in tables(pg_url) and "alembic_version" not in tables(pg_url)
    proc = gate(pg_url, "--timeout", "0", config=ini)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"head {revs[-1].id}: starting" in proc.stdout


def test_usage_errors_exit_2(pg_url: str, tmp_path: Path) -> None:
    proc = gate(pg_url, config=tmp_path / "missing.ini")
    assert proc.returncode == 2 and proc.stderr.startswith("error: Alembic config not found")
    proc = gate("not a url")
    assert proc.returncode == 2 and "database URL is not valid" in proc.stderr
