"""Review: the digest, the plan's JSON contract, acceptances, and each rule (no database)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from umt_migrations.review import guide, sqlrules
from umt_migrations.review.digest import digest
from umt_migrations.review.findings import ERROR, WARNING, Finding, accept, counts, merge
from umt_migrations.review.render import RenderedStep
from umt_migrations.review.source import RevisionSource

pytestmark = pytest.mark.unit

CLI = [sys.executable, "-m", "umt_migrations"]
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
UMT_HISTORY = ["0abb288d754e", "3ab691d3a566", "7b15a05d0cb1", "240cfb931a0a"]


def plan_json(*args: str) -> dict:
    proc = subprocess.run([*CLI, "plan", "--format", "json", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, "the JSON plan is one line, whatever env.py logs on stderr"
    return json.loads(lines[0])


def step(revision: str, sql: str, code: str = "x = 1\n", error: str | None = None) -> RenderedStep:
    return RenderedStep(revision, "", sql, RevisionSource(Path(f"{revision}.py"), code), error)


# --- the digest ----------------------------------------------------------------------------


def test_digest_is_the_same_in_other_processes() -> None:
    args = ("--to", "head", "--from", "base", "--dialect", "postgresql")
    first, second = plan_json(*args), plan_json(*args)
    assert DIGEST.match(first["digest"])
    assert first["digest"] == second["digest"]
    again = digest(None, "240cfb931a0a", [
        step(s["revision"], s["sql"]) for s in first["steps"]
    ])
    assert again != first["digest"]  # content hashes are part of it: fake files differ ...
    files = {p.name.split("-")[1][:12]: p for p in (REPO_ROOT / "migrations/versions").glob("*.py")}
    rebuilt = digest(None, "240cfb931a0a", [
        RenderedStep(s["revision"], "", s["sql"], RevisionSource.read(files[s["revision"]]))
        for s in first["steps"]
    ])
    assert rebuilt == first["digest"]  # ... the real ones give the printed digest


def test_any_change_of_sql_order_revisions_or_files_changes_the_digest() -> None:
    a, b = step("a1", "CREATE TABLE a (id INT);\n"), step("b2", "CREATE TABLE b (id INT);\n")
    base = digest(None, "b2", [a, b])
    assert base == digest(None, "b2", [a, b])
    variants = [
        digest(None, "b2", [b, a]),
        digest(None, "b2", [a, step("b2", "CREATE TABLE b (id BIGINT);\n")]),
        digest(None, "b2", [a, step("b2", "CREATE TABLE b (id INT);\n", code="x = 2\n")]),
        digest(None, "b2", [a]),
        digest("a0", "b2", [a, b]),
        digest(None, "b3", [a, b]),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_an_unrenderable_step_is_digested_by_its_file() -> None:
    broken = step("b2", "partial", error="AttributeError: reads the database")
    other_partial = step("b2", "other partial text", error="AttributeError: reads the database")
    assert digest(None, "b2", [broken]) == digest(None, "b2", [other_partial])
    edited = step("b2", "partial", code="x = 2\n", error="AttributeError")
    assert digest(None, "b2", [broken]) != digest(None, "b2", [edited])


# --- the plan's JSON contract ------------------------------------------------------------


def test_plan_json_contract_for_umt_history() -> None:
    plan = plan_json("--to", "head", "--from", "base", "--dialect", "postgresql")
    assert set(plan) == {"version", "dialect", "from", "to", "direction", "steps", "findings",
                         "digest"}
    assert (plan["version"], plan["dialect"], plan["from"], plan["to"], plan["direction"]) == (
        1, "postgresql", None, "240cfb931a0a", "upgrade")
    assert [s["revision"] for s in plan["steps"]] == UMT_HISTORY
    for entry in plan["steps"]:
        assert set(entry) == {"revision", "description", "sql", "contentHash", "findings"}
        assert DIGEST.match(entry["contentHash"])
        assert "-- Running upgrade" in entry["sql"]
        for finding in entry["findings"]:
            assert {"rule", "severity", "message", "statement", "accepted", "reason"} <= set(
                finding)
            assert finding["severity"] in ("error", "warning")
            assert finding["accepted"] is (finding["reason"] is not None)
    all_findings = [f for s in plan["steps"] for f in s["findings"]]
    assert plan["findings"] == {
        "error": sum(f["severity"] == "error" and not f["accepted"] for f in all_findings),
        "warning": sum(f["severity"] == "warning" and not f["accepted"] for f in all_findings),
        "accepted": sum(f["accepted"] for f in all_findings),
    }
    drops = [f for f in plan["steps"][3]["findings"] if f["rule"] == "ban-drop-column"]
    assert sorted(f["statement"] for f in drops) == [
        f"ALTER TABLE users DROP COLUMN {c};" for c in ("email_opt_in", "locale", "timezone")]
    assert all(f["accepted"] and "user_preferences" in f["reason"] for f in drops)
    assert plan["findings"]["error"] == 0
    # the version table's bookkeeping is in the SQL, not in the findings
    assert "alembic_version" in plan["steps"][0]["sql"]
    assert not any("alembic_version" in (f["statement"] or "") for f in all_findings)


def test_downgrade_plan_and_its_refusal() -> None:
    plan = plan_json("--to", "7b15a05d0cb1", "--from", "240cfb931a0a", "--dialect", "mysql",
                     "--allow-downgrade")
    assert (plan["direction"], plan["from"], plan["to"]) == ("downgrade", "240cfb931a0a",
                                                            "7b15a05d0cb1")
    assert "-- Running downgrade 240cfb931a0a -> 7b15a05d0cb1" in plan["steps"][0]["sql"]
    proc = subprocess.run([*CLI, "plan", "--to", "base", "--from", "head", "--dialect", "mysql"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2 and "--allow-downgrade" in proc.stderr


def test_an_unknown_dialect_is_a_usage_error() -> None:
    """Not exit 3 ("env.py failed while rendering offline") with SQLAlchemy's plugin error."""
    proc = subprocess.run([*CLI, "plan", "--to", "head", "--from", "base", "--dialect", "bogus"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: --dialect 'bogus': SQLAlchemy knows no such dialect "
                                   "(e.g. postgresql, mysql, mariadb, sqlite)")


# --- acceptances and content hashes ----------------------------------------------------------


REVISION = '''\
"""Drop the legacy table.

Revision ID: b2
Why: nobody reads it since the 2026-01 rewrite.
"""
from alembic import op

revision = "b2"
{accept}

def upgrade():
    op.drop_table("legacy")
'''


def source(accept: str = "", body: str = REVISION) -> RevisionSource:
    return RevisionSource(Path("b2.py"), body.format(accept=accept))


def test_acceptances_need_a_reason_and_a_literal() -> None:
    good = source('lint_accept = {"ban-drop-table": "empty since the 2026-01 rewrite"}')
    assert good.acceptances.reasons == {"ban-drop-table": "empty since the 2026-01 rewrite"}
    assert good.acceptances.problems == []
    for missing in ('""', '"   "', "None"):
        bare = source(f'lint_accept = {{"ban-drop-table": {missing}}}')
        assert bare.acceptances.reasons == {}
        assert [p.rule for p in bare.acceptances.problems] == ["lint-accept-without-reason"]
        assert bare.acceptances.problems[0].severity == ERROR
    computed = source("lint_accept = dict(x='y')")
    assert [p.rule for p in computed.acceptances.problems] == ["lint-accept-invalid"]


def test_accepted_findings_stay_marked_and_some_rules_cannot_be_accepted() -> None:
    findings = [
        Finding("ban-drop-table", ERROR, "drops", "DROP TABLE legacy;"),
        Finding("require-lock-timeout", WARNING, "lock", "DROP TABLE legacy;"),
        Finding("revision-edited", ERROR, "edited"),
    ]
    result = accept(findings, {"ban-drop-table": "empty", "revision-edited": "trust me",
                               "require-lock-timeout": ""})
    assert [(f.rule, f.accepted, f.reason) for f in result] == [
        ("ban-drop-table", True, "empty"),
        ("require-lock-timeout", False, None),
        ("revision-edited", False, None),
    ]
    assert counts(result) == {"error": 1, "warning": 1, "accepted": 1}


def test_squawk_and_project_findings_of_one_rule_merge_into_the_stricter() -> None:
    merged = merge([
        Finding("ban-drop-column", WARNING, "squawk says", "ALTER …;", source="squawk"),
        Finding("ban-drop-column", ERROR, "we say", "ALTER …;", source="sql"),
        Finding("ban-drop-column", ERROR, "we say", "ALTER other;", source="sql"),
    ])
    assert [(f.severity, f.statement) for f in merged] == [
        (ERROR, "ALTER …;"), (ERROR, "ALTER other;")]


def test_content_hash_ignores_lint_accept_and_line_endings_only() -> None:
    plain = source().content_hash
    assert source('lint_accept = {"ban-drop-table": "empty"}').content_hash == plain
    assert source('lint_accept = {\n    "ban-drop-table": (\n        "a"\n    ),\n}').content_hash \
        == plain
    assert RevisionSource(Path("b2.py"), REVISION.format(accept="").replace("\n", "\r\n")) \
        .content_hash == plain
    assert source("#: accepted, and why\nlint_accept = {}\n\n").content_hash == plain
    assert source("# a comment").content_hash != plain
    edited = REVISION.replace('op.drop_table("legacy")', 'op.drop_table("legacy2")')
    assert source(body=edited).content_hash != plain


# --- the project's SQL rules -----------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "sql", "rules"), [
    ("postgresql", "DROP TABLE legacy", ["ban-drop-table"]),
    ("postgresql", "DROP INDEX ix_a", []),
    ("postgresql", "ALTER TABLE t DROP COLUMN a", ["ban-drop-column"]),
    ("postgresql", "ALTER TABLE t ALTER COLUMN a TYPE BIGINT", ["changing-column-type"]),
    ("postgresql", "ALTER TABLE t RENAME COLUMN a TO b", ["renaming-column"]),
    ("postgresql", "ALTER TABLE t RENAME TO u", ["renaming-table"]),
    ("postgresql", "ALTER TABLE t ADD COLUMN x INTEGER NOT NULL", ["adding-required-field"]),
    ("postgresql", "ALTER TABLE t ADD COLUMN x INTEGER DEFAULT 0 NOT NULL", []),
    ("postgresql", "ALTER TABLE t ADD COLUMN x INTEGER", []),
    ("postgresql", "ALTER TABLE t ALTER COLUMN x SET NOT NULL", ["adding-not-nullable-field"]),
    ("postgresql", "TRUNCATE t", ["ban-truncate"]),
    ("postgresql", "DELETE FROM t", ["ban-delete-without-where"]),
    ("postgresql", "DELETE FROM t WHERE id < 10", []),
    ("postgresql", "INSERT INTO t (a) VALUES ('x;y')", []),
    ("mysql", "ALTER TABLE t DROP COLUMN a", ["ban-drop-column"]),
    ("mysql", "ALTER TABLE t CHANGE a b INTEGER NULL", ["renaming-column"]),
    ("mysql", "ALTER TABLE t MODIFY a BIGINT NOT NULL", ["mysql-modify-column"]),
    ("mysql", "RENAME TABLE t TO u", ["renaming-table"]),
    ("mysql", "DROP TABLE legacy", ["ban-drop-table"]),
    ("sqlite", "ALTER TABLE t DROP COLUMN a", ["ban-drop-column"]),
])
def test_sql_rules(dialect: str, sql: str, rules: list[str]) -> None:
    findings = sqlrules.check(sqlrules.split(f"BEGIN;\n\n-- x\n\n{sql};\n\nCOMMIT;\n", dialect))
    assert [f.rule for f in findings] == rules
    assert all(f.statement == f"{sql};" for f in findings)


def test_sqlite_batch_copies_are_not_drops() -> None:
    sql = ("CREATE TABLE _alembic_tmp_users (id INTEGER NOT NULL);\n"
           "INSERT INTO _alembic_tmp_users (id) SELECT users.id FROM users;\n"
           "DROP TABLE users;\nALTER TABLE _alembic_tmp_users RENAME TO users;\n")
    assert sqlrules.check(sqlrules.split(sql, "sqlite")) == []


# --- the guide's rules -----------------------------------------------------------------------


def guide_rules(code: str) -> list[str]:
    return [f.rule for f in guide.check(RevisionSource(Path("r.py"), textwrap.dedent(code)))]


def test_guide_docstring_rule() -> None:
    assert guide_rules('"""Add x.\n\nWhy: the report needs it."""\n') == []
    assert guide_rules("x = 1\n") == ["missing-docstring"]
    assert guide_rules('"""Add x.\n\nRevision ID: a\nRevises:\nCreate Date: now\n"""\n') == [
        "missing-docstring"]
    assert guide_rules(
        '"""Add x.\n\nRevision ID: a\n\nWhy: <the reason for this change: the feature>\n"""\n'
    ) == ["missing-docstring"]


def test_guide_column_copy_and_model_imports() -> None:
    doc = '"""Add x.\n\nWhy: y."""\n'
    assert guide_rules(doc + "c = users.c.email.copy()\n") == ["column-copy"]
    assert guide_rules(doc + "c = User.email.copy()\n") == ["column-copy"]
    assert guide_rules(doc + "c = sa.Column('a', sa.Integer()).copy()\n") == ["column-copy"]
    assert guide_rules(doc + "d = {}.copy()\nsettings = options.copy()\n") == []
    assert guide_rules(doc + "from umt.models import User\n") == ["imports-app-models"]
    assert guide_rules(doc + "from umt import models\n") == ["imports-app-models"]
    assert guide_rules(doc + "import sqlalchemy as sa\n") == []


def test_guide_schema_and_data() -> None:
    doc = '"""Update the thing.\n\nWhy: y."""\n'
    schema = "def upgrade():\n    op.add_column('t', sa.Column('a', sa.Integer()))\n"
    assert guide_rules(doc + schema) == []
    assert guide_rules(doc + schema + "    op.execute('UPDATE t SET a = 1')\n") == [
        "schema-and-data"]
    assert guide_rules(doc + schema + "    op.execute(users.update().values(a=1))\n") == [
        "schema-and-data"]
    assert guide_rules(doc + "def upgrade():\n    op.execute('CREATE TABLE a (id INT)')\n"
                       "    op.bulk_insert(t, [])\n") == ["schema-and-data"]
    assert guide_rules(doc + "def upgrade():\n    op.execute('UPDATE t SET a = 1')\n") == []


def test_applied_hashes_flag_a_revision_edited_after_it_ran(tmp_path: Path) -> None:
    base = plan_json("--to", "head", "--from", "3ab691d3a566", "--dialect", "postgresql")
    assert "edited" not in base
    files = {p.name.split("-")[1][:12]: p for p in (REPO_ROOT / "migrations/versions").glob("*.py")}
    ran = {rev: RevisionSource.read(files[rev]).content_hash for rev in HISTORY_RAN}
    hashes = tmp_path / "hashes.json"
    hashes.write_text(json.dumps(ran))
    same = plan_json("--to", "head", "--from", "3ab691d3a566", "--dialect", "postgresql",
                     "--applied-hashes", str(hashes))
    assert "edited" not in same and same["findings"] == base["findings"]
    assert same["digest"] == base["digest"]

    hashes.write_text(json.dumps({**ran, "0abb288d754e": "sha256:" + "0" * 64,
                                  "ffffffffffff": "sha256:" + "1" * 64}))
    edited = plan_json("--to", "head", "--from", "3ab691d3a566", "--dialect", "postgresql",
                       "--applied-hashes", str(hashes))
    assert [(e["revision"], e["rule"], e["severity"]) for e in edited["edited"]] == [
        ("0abb288d754e", "revision-edited", "error")]
    assert edited["findings"]["error"] == base["findings"]["error"] + 1

    hashes.write_text("[1, 2]")
    proc = subprocess.run([*CLI, "plan", "--to", "head", "--from", "base", "--dialect", "mysql",
                           "--applied-hashes", str(hashes)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2 and "--applied-hashes" in proc.stderr


HISTORY_RAN = ["0abb288d754e", "3ab691d3a566"]
