"""plan, lint, check --format json and migrate --plan-digest as processes, on real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.alembic_projects import LOG_TABLE, Rev, make_project
from tests.conftest import REPO_ROOT
from tests.integration.test_migrate_runner import run_migrate, table_names

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "umt_migrations"]
UMT_INI = REPO_ROOT / "alembic.ini"
HISTORY = ["0abb288d754e", "3ab691d3a566", "7b15a05d0cb1", "240cfb931a0a"]


def cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UMT_ALEMBIC_CONFIG",
                                                             "TERMINATION_MESSAGE_PATH")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=180)


def plan(*args: str, cwd: Path = REPO_ROOT) -> dict:
    proc = cli("plan", "--format", "json", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def rules(step: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in step["findings"]:
        found.setdefault(finding["rule"], []).append(finding)
    return found


def migrate_umt(url: str, where: Path, *args: str) -> tuple[int, dict, str, str]:
    """``migrate`` on UMT's own project, its report written under ``where`` (not the repo)."""
    return run_migrate(UMT_INI, url, *args, cwd=where)


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(dialect of the URL, URL of a fresh database) on each server."""
    url = request.getfixturevalue({"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param])
    return ("postgresql" if request.param == "postgresql" else "mysql"), url


# --- UMT's history ---------------------------------------------------------------------------


def test_umt_history_planned_from_base_and_from_3ab691d3a566(
    tmp_path: Path, server: tuple[str, str]
) -> None:
    dialect, url = server
    from_base = plan("--url", url, "--to", "head")  # reads the (empty) database
    assert table_names(url) == set()  # read-only: not even a version table
    assert (from_base["from"], from_base["to"], from_base["dialect"]) == (
        None, "240cfb931a0a", dialect)
    assert [s["revision"] for s in from_base["steps"]] == HISTORY
    assert from_base == plan("--to", "head", "--from", "base", "--dialect", dialect)

    code, _, _, stderr = migrate_umt(url, tmp_path, "--to", "3ab691d3a566")
    assert code == 0, stderr
    planned = plan("--url", url, "--to", "head")
    assert planned["from"] == "3ab691d3a566"
    assert [s["revision"] for s in planned["steps"]] == ["7b15a05d0cb1", "240cfb931a0a"]
    offline = plan("--to", "head", "--from", "3ab691d3a566", "--dialect", dialect)
    assert planned["digest"] == offline["digest"] != from_base["digest"]

    last = rules(planned["steps"][1])
    drops = last["ban-drop-column"]
    assert len(drops) == 3 and all(f["severity"] == "error" and f["accepted"] for f in drops)
    assert "user_preferences" in drops[0]["reason"]
    assert last["schema-and-data"][0]["accepted"]
    assert planned["findings"]["error"] == 0 and planned["findings"]["accepted"] >= 4
    if dialect == "postgresql":  # squawk's own findings are there too
        assert "require-concurrent-index-creation" in rules(planned["steps"][0])
        assert all(f["source"] in ("squawk", "sql", "guide", "plan", "sql+squawk", "squawk+sql")
                   for s in planned["steps"] for f in s["findings"])


def test_lint_of_umt_history_passes_with_its_acceptance() -> None:
    for dialect in ("postgresql", "mysql"):
        proc = cli("lint", "--dialect", dialect)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ban-drop-column" not in proc.stdout and " accepted" in proc.stdout
        verbose = cli("lint", "--dialect", dialect, "--verbose")
        assert "accepted error ban-drop-column" in verbose.stdout


def test_plan_summary_goes_to_the_termination_message(tmp_path: Path, pg_url: str) -> None:
    summary = tmp_path / "summary.json"
    proc = cli("plan", "--url", pg_url, "--to", "head", "--format", "json",
               "--report", str(summary))
    assert proc.returncode == 0, proc.stderr
    full, short = json.loads(proc.stdout), json.loads(summary.read_text())
    assert len(summary.read_bytes()) <= 4096
    assert short["ok"] is True and short["digest"] == full["digest"]
    assert short["findings"] == full["findings"]
    assert [s["revision"] for s in short["steps"]] == HISTORY

    proc = cli("plan", "--url", "postgresql://nobody:s3cret@127.0.0.1:1/x", "--to", "head",
               "--report", str(summary))
    assert proc.returncode == 1 and "s3cret" not in proc.stderr + summary.read_text()
    assert json.loads(summary.read_text())["error"]["reason"] == "DatabaseUnavailable"


# --- lint on fixture revisions ---------------------------------------------------------------


def fixture_project(root: Path) -> Path:
    """A project whose revisions create a table, index it without CONCURRENTLY, and drop it."""
    revs = [
        Rev("a000000000000", None, "create tables",
            upgrade_sql=[LOG_TABLE,
                         "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(20))"]),
        Rev("b000000000001", "a000000000000", "index items by name",
            upgrade_sql=["CREATE INDEX ix_items_name ON items (name)"],
            downgrade_sql=["DROP INDEX ix_items_name"]),
        Rev("c000000000002", "b000000000001", "drop items",
            upgrade_sql=["DROP TABLE items"]),
    ]
    return make_project(root, revs)


def revision_file(ini: Path, rev_id: str) -> Path:
    return ini.parent / "migrations" / "versions" / f"{rev_id}.py"


def test_lint_fails_on_an_unaccepted_drop_table_and_passes_once_accepted(tmp_path: Path) -> None:
    ini = fixture_project(tmp_path)
    proc = cli("--config", str(ini), "lint", "--dialect", "postgresql", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    index, drop = result["steps"][1], result["steps"][2]
    concurrent = rules(index)["require-concurrent-index-creation"][0]
    assert concurrent["statement"] == "CREATE INDEX ix_items_name ON items (name);"
    assert concurrent["severity"] == "warning" and not concurrent["accepted"]
    dropped = rules(drop)["ban-drop-table"][0]
    assert (dropped["severity"], dropped["accepted"], dropped["statement"]) == (
        "error", False, "DROP TABLE items;")

    for dialect in ("mysql", "sqlite"):  # the project's own rule, on every dialect
        assert cli("--config", str(ini), "lint", "--dialect", dialect).returncode == 1

    path = revision_file(ini, "c000000000002")
    path.write_text(path.read_text() + '\nlint_accept = {"ban-drop-table": "   "}\n')
    proc = cli("--config", str(ini), "lint", "--dialect", "postgresql")
    assert proc.returncode == 1 and "lint-accept-without-reason" in proc.stdout

    path.write_text(path.read_text().replace('"   "', '"items moved to the catalog service"'))
    proc = cli("--config", str(ini), "lint", "--dialect", "postgresql", "-v")
    assert proc.returncode == 0, proc.stdout
    assert "accepted error ban-drop-table" in proc.stdout
    assert "[accepted: items moved to the catalog service]" in proc.stdout
    strict = cli("--config", str(ini), "lint", "--dialect", "postgresql", "--fail-on", "warning")
    assert strict.returncode == 1  # the non-concurrent index is still a warning


def test_lint_against_a_git_ref_flags_edited_revisions(tmp_path: Path) -> None:
    ini = fixture_project(tmp_path)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "history"], check=True)
    path = revision_file(ini, "c000000000002")
    original = path.read_text()

    path.write_text(original + '\nlint_accept = {"ban-drop-table": "items moved elsewhere"}\n')
    proc = cli("--config", str(ini), "lint", "--dialect", "mysql", "--against", "HEAD")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # an acceptance is not an edit

    edited = revision_file(ini, "b000000000001")
    edited.write_text(edited.read_text().replace("(name)", "(name, id)"))
    proc = cli("--config", str(ini), "lint", "--dialect", "mysql", "--against", "HEAD")
    assert proc.returncode == 1
    assert "b000000000001: error revision-edited" in proc.stdout

    proc = cli("--config", str(ini), "lint", "--against", "no-such-ref")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --against")


# --- the runner's digest check ---------------------------------------------------------------


def test_plan_digest_runs_the_approved_plan_and_refuses_a_changed_one(
    tmp_path: Path, pg_url: str
) -> None:
    code, _, _, stderr = migrate_umt(pg_url, tmp_path, "--to", "3ab691d3a566")
    assert code == 0, stderr
    approved = plan("--url", pg_url, "--to", "head")["digest"]

    code, _, _, stderr = migrate_umt(pg_url, tmp_path, "--to", "7b15a05d0cb1")  # the db moves
    assert code == 0, stderr
    code, report, _, _ = migrate_umt(pg_url, tmp_path, "--to", "head", "--plan-digest", approved)
    assert code == 2
    assert report["error"]["reason"] == "PlanChanged" and approved in report["error"]["message"]
    assert report["applied"] == [] and report["toRevision"] == "7b15a05d0cb1"
    assert "timezone" in {c["name"] for c in sa.inspect(sa.create_engine(pg_url))
                          .get_columns("users")}  # 240cfb931a0a did not run

    fresh = plan("--url", pg_url, "--to", "head")["digest"]
    code, report, _, stderr = migrate_umt(pg_url, tmp_path, "--to", "head", "--plan-digest", fresh)
    assert code == 0, stderr
    assert report["applied"] == ["240cfb931a0a"]
    code, report, _, _ = migrate_umt(pg_url, tmp_path, "--to", "head", "--plan-digest", "sha256:0")
    assert (code, report["direction"]) == (0, "none")  # nothing to run: nothing to refuse


def test_a_revision_that_reads_the_database_is_planned_by_its_file(
    tmp_path: Path, server: tuple[str, str]
) -> None:
    _, url = server
    revs = [
        Rev("a000000000000", None, "log", upgrade_sql=[LOG_TABLE]),
        Rev("b000000000001", "a000000000000", "count first",
            upgrade_python=["count = op.get_bind().exec_driver_sql("
                            "'SELECT COUNT(*) FROM applied_log').scalar()",
                            "assert count is not None"]),
    ]
    ini = make_project(tmp_path, revs)
    planned = plan("--config", str(ini), "--url", url, "--to", "head")
    step = planned["steps"][1]
    assert rules(step)["not-offline-renderable"][0]["severity"] == "warning"
    assert "-- not offline-renderable" in step["sql"]
    marker, stamp = step["sql"].index("-- not offline-renderable"), step["sql"].index("UPDATE")
    assert marker < stamp  # where the step stopped, before Alembic's stamp of the version

    path = revision_file(ini, "b000000000001")
    path.write_text(path.read_text() + "\n# edited after review\n")
    edited = plan("--config", str(ini), "--url", url, "--to", "head")["digest"]
    assert edited != planned["digest"]
    code, report, _, _ = run_migrate(ini, url, "--to", "head", "--plan-digest", planned["digest"])
    assert (code, report["error"]["reason"]) == (2, "PlanChanged")
    assert table_names(url) == set()  # not even the first revision ran
    code, report, _, stderr = run_migrate(ini, url, "--to", "head", "--plan-digest", edited)
    assert code == 0, stderr
    assert report["applied"] == ["a000000000000", "b000000000001"]


# --- drift -----------------------------------------------------------------------------------


def test_check_json_names_a_column_added_by_hand(tmp_path: Path, server: tuple[str, str]) -> None:
    _, url = server
    code, _, _, stderr = migrate_umt(url, tmp_path, "--to", "head")
    assert code == 0, stderr
    proc = cli("--url", url, "check", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["drifted"] is False

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users ADD COLUMN x INTEGER")
    engine.dispose()
    written = tmp_path / "drift.json"
    proc = cli("--url", url, "check", "--format", "json", "--report", str(written))
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(written.read_text()) == report
    assert report["drifted"] is True and report["extra"]["columns"] == ["users.x"]
    assert report["counts"] == {"extra": 1, "missing": 0, "modified": 0}


def test_check_json_says_not_supported_without_target_metadata(tmp_path: Path,
                                                               pg_url: str) -> None:
    ini = fixture_project(tmp_path)
    code, _, _, stderr = run_migrate(ini, pg_url, "--to", "head")
    assert code == 0, stderr
    proc = cli("--config", str(ini), "--url", pg_url, "check", "--format", "json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["supported"] is False and "target_metadata" in report["message"]
