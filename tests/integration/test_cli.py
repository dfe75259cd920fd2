"""The day-to-day CLI, run as the UMT team runs it: a process, its output and exit code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alembic_projects import linear_chain, make_project, set_script_location
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

MANAGE = [sys.executable, str(REPO_ROOT / "manage_migrations.py")]
CONSOLE = [str(Path(sys.executable).parent / "umt-migrations")]
REVISION_FILES = sorted((REPO_ROOT / "migrations" / "versions").glob("*.py"))
REVISION_IDS = [re.search(r"-([0-9a-f]{12})_", p.name).group(1) for p in REVISION_FILES]
HEAD = REVISION_IDS[-1]


def cli(*args: str, cwd: Path, program: list[str] = MANAGE, env: dict | None = None):
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UMT_ALEMBIC_CONFIG")}
    return subprocess.run([*program, *args], capture_output=True, text=True, cwd=cwd,
                          env={**clean, **(env or {})}, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The failure is one ``error:`` line, non-zero exit, no traceback."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A private copy of the project (models, migrations, CLI) that a test may change."""
    root = tmp_path / "umt"
    shutil.copytree(REPO_ROOT / "migrations", root / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "src" / "umt", root / "src" / "umt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "alembic.ini", root)
    shutil.copy(REPO_ROOT / "manage_migrations.py", root)
    return root


def test_quick_start_on_the_embedded_sqlite_database(tmp_path: Path) -> None:
    up = cli("upgrade", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert (tmp_path / "umt.db").is_file()
    current = cli("current", cwd=tmp_path)
    assert current.returncode == 0 and f"{HEAD} (head)" in current.stdout
    history = cli("history", cwd=tmp_path)
    assert all(rev in history.stdout for rev in REVISION_IDS)
    assert history.stdout.index(HEAD) < history.stdout.index(REVISION_IDS[0])  # newest first
    verbose = cli("history", "--verbose", cwd=tmp_path)
    assert "Revision ID:" in verbose.stdout and "Add user preferences table" in verbose.stdout
    heads = cli("heads", cwd=tmp_path)
    assert heads.stdout.strip().startswith(HEAD)
    # The console script is the same CLI.
    assert cli("current", cwd=tmp_path, program=CONSOLE).stdout == current.stdout
    down = cli("downgrade", REVISION_IDS[1], cwd=tmp_path, program=CONSOLE)
    assert down.returncode == 0, down.stderr
    assert REVISION_IDS[1] in cli("current", cwd=tmp_path).stdout


def test_url_comes_from_flag_then_environment(tmp_path: Path, pg_url: str) -> None:
    assert cli("upgrade", REVISION_IDS[0], "--url", pg_url, cwd=tmp_path).returncode == 0
    env_current = cli("current", cwd=tmp_path, env={"DATABASE_URL": pg_url})
    assert REVISION_IDS[0] in env_current.stdout
    assert not (tmp_path / "umt.db").exists()


def test_an_unreachable_database_from_the_project_ini_is_the_one_named(tmp_path: Path) -> None:
    """No --url, no DATABASE_URL: the project's own sqlalchemy.url is used, and named."""
    ini = make_project(tmp_path / "shop", linear_chain(1),
                       url="postgresql://bob:s3cr3tpw@127.0.0.1:9/shop")
    line = one_error_line(cli("current", "--config", str(ini), cwd=tmp_path))
    assert "cannot reach the database at postgresql://127.0.0.1:9/shop: " in line
    assert "s3cr3tpw" not in line and "sqlite" not in line


def test_unknown_revision(tmp_path: Path) -> None:
    line = one_error_line(cli("upgrade", "deadbeef1234", cwd=tmp_path))
    assert "Can't locate revision" in line and "Fix:" in line and "history" in line


def test_target_database_not_up_to_date(project_copy: Path, pg_url: str) -> None:
    proc = cli("create", "--message", "too early", "--autogenerate", "--url", pg_url,
               cwd=project_copy)
    line = one_error_line(proc)
    assert "Target database is not up to date" in line and "run `upgrade` first" in line
    assert len(list((project_copy / "migrations" / "versions").glob("*.py"))) == len(REVISION_IDS)


def test_relative_revision_needs_a_current_version(tmp_path: Path, pg_url: str) -> None:
    line = one_error_line(cli("downgrade", "-1", "--url", pg_url, cwd=tmp_path))
    assert "Relative revision identifiers require current version" in line
    assert "Fix: use an absolute revision id" in line
    assert cli("upgrade", "+2", "--url", pg_url, cwd=tmp_path).returncode != 0
    assert cli("upgrade", REVISION_IDS[0], "--url", pg_url, cwd=tmp_path).returncode == 0
    relative = cli("upgrade", "+1", "--url", pg_url, cwd=tmp_path)
    assert relative.returncode == 0, relative.stderr
    assert REVISION_IDS[1] in cli("current", "--url", pg_url, cwd=tmp_path).stdout


def test_multiple_heads_then_merge(project_copy: Path, pg_url: str) -> None:
    versions = project_copy / "migrations" / "versions"
    branch = versions / "2026_04_01_0900-0b0b0b0b0b0b_side_branch.py"
    branch.write_text(
        '"""Side branch for a hotfix."""\n'
        f'revision = "0b0b0b0b0b0b"\ndown_revision = "{REVISION_IDS[1]}"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    line = one_error_line(cli("upgrade", "--url", pg_url, cwd=project_copy))
    assert "Multiple head revisions" in line and "run `merge`" in line

    merged = cli("merge", "--message", "join hotfix", cwd=project_copy)
    assert merged.returncode == 0, merged.stderr
    assert "created migrations/versions/" in merged.stdout
    heads = cli("heads", cwd=project_copy).stdout.strip().splitlines()
    assert len(heads) == 1
    up = cli("upgrade", "--url", pg_url, cwd=project_copy)
    assert up.returncode == 0, up.stderr
    assert "nothing to merge" in cli("merge", cwd=project_copy).stdout


def test_no_password_in_any_output(tmp_path: Path) -> None:
    url = "postgresql://umt:TopSecret99@127.0.0.1:1/umt"
    for args in (["current", "--url", url], ["upgrade", "--url", url],
                 ["migrate", "--to", "head", "--url", url, "--report", str(tmp_path / "r.json")]):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode != 0
        everything = proc.stdout + proc.stderr
        assert "TopSecret99" not in everything and "Traceback" not in everything
        assert "127.0.0.1:1" in everything
    line = one_error_line(cli("current", cwd=tmp_path, env={"DATABASE_URL": url}))
    assert "cannot reach the database at postgresql://127.0.0.1:1/umt" in line
    assert "TopSecret99" not in (tmp_path / "r.json").read_text()


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    assert "not valid" in one_error_line(cli("current", "--url", "::nope::", cwd=tmp_path))
    line = one_error_line(cli("current", "--config", str(tmp_path / "missing.ini"), cwd=tmp_path))
    assert "Alembic config not found" in line
    assert "must not be empty" in one_error_line(cli("create", "--message", " ", cwd=tmp_path))
    usage = cli("upgrade", "--lock-timeout", "x", cwd=tmp_path)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


@pytest.mark.parametrize(("content", "expected"), [
    ("x\n", "cannot read the Alembic config"),
    ("[alembic]\nsqlalchemy.url = sqlite:///x.db\n", "has no script_location"),
])
def test_an_unusable_alembic_ini_is_named_by_every_command(
        tmp_path: Path, content: str, expected: str) -> None:
    ini = tmp_path / "broken.ini"
    ini.write_text(content)
    for command in (["current"], ["wait-for-schema", "--timeout", "0"]):
        assert expected in one_error_line(cli(*command, "--config", str(ini), cwd=tmp_path))
    migrate = cli("migrate", "--to", "head", "--config", str(ini), cwd=tmp_path)
    assert migrate.returncode == 2 and "Traceback" not in migrate.stderr
    assert expected in migrate.stderr


def test_check_passes_at_head(tmp_path: Path, pg_url: str) -> None:
    assert cli("upgrade", "--url", pg_url, cwd=tmp_path).returncode == 0
    check = cli("check", "--url", pg_url, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "models and migrations agree" in check.stdout


def test_autogenerate_on_a_changed_model_then_check(project_copy: Path, pg_url: str) -> None:
    own = [sys.executable, str(project_copy / "manage_migrations.py")]  # imports the copy's models
    brands = project_copy / "src" / "umt" / "models" / "brands.py"
    source = brands.read_text()
    anchor = "    description: Mapped[str | None] = mapped_column(sa.Text)\n"
    assert anchor in source
    brands.write_text(source.replace(
        anchor, anchor + "    tagline: Mapped[str | None] = mapped_column(sa.String(140))\n"))
    assert cli("upgrade", "--url", pg_url, cwd=project_copy, program=own).returncode == 0

    drift = cli("check", "--url", pg_url, cwd=project_copy, program=own)
    assert drift.returncode == 1 and "tagline" in drift.stderr

    created = cli("create", "--message", "Add brand tagline", "--autogenerate", "--url", pg_url,
                  cwd=project_copy, program=own)
    assert created.returncode == 0, created.stderr
    new_files = [p for p in (project_copy / "migrations" / "versions").glob("*.py")
                 if p.name not in {f.name for f in REVISION_FILES}]
    assert len(new_files) == 1 and new_files[0].name.endswith("_add_brand_tagline.py")
    text = new_files[0].read_text()
    assert "add_column" in text and "tagline" in text and "drop_column" in text

    assert cli("upgrade", "--url", pg_url, cwd=project_copy, program=own).returncode == 0
    check = cli("check", "--url", pg_url, cwd=project_copy, program=own)
    assert check.returncode == 0, check.stderr
    back = cli("downgrade", "-1", "--url", pg_url, cwd=project_copy, program=own)
    assert back.returncode == 0, back.stderr


def test_autogenerate_on_an_unchanged_model_writes_nothing(project_copy: Path,
                                                           pg_url: str) -> None:
    """Alembic would write an empty revision; `create --autogenerate` writes none, exit 0.
    Without --autogenerate the empty template is what was asked for, and is written."""
    own = [sys.executable, str(project_copy / "manage_migrations.py")]
    versions = project_copy / "migrations" / "versions"
    assert cli("upgrade", "--url", pg_url, cwd=project_copy, program=own).returncode == 0

    unchanged = cli("create", "--message", "Nothing", "--autogenerate", "--url", pg_url,
                    cwd=project_copy, program=own)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout == "no changes detected in the models; no revision written\n"
    assert sorted(p.name for p in versions.glob("*.py")) == sorted(f.name for f in REVISION_FILES)

    template = cli("create", "--message", "Data fix", "--url", pg_url, cwd=project_copy,
                   program=own)
    assert template.returncode == 0, template.stderr
    assert "\ncreated " in template.stdout
    new_files = [p for p in versions.glob("*.py")
                 if p.name not in {f.name for f in REVISION_FILES}]
    assert len(new_files) == 1 and new_files[0].name.endswith("_data_fix.py")


def test_day_to_day_commands_find_a_relative_script_location(tmp_path: Path, pg_url: str) -> None:
    """An installed project whose ini says ``myapp/migrations`` (relative to site-packages)."""
    ini = make_project(tmp_path / "site-packages" / "myapp", linear_chain(2),
                       relative_script_location=True)
    set_script_location(ini, "myapp/migrations")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    common = ["--config", str(ini), "--url", pg_url]
    up = cli("upgrade", *common, cwd=elsewhere)
    assert up.returncode == 0, up.stderr
    current = cli("current", *common, cwd=elsewhere)
    assert current.returncode == 0 and "c00000000002 (head)" in current.stdout, current.stderr
    history = cli("history", *common, cwd=elsewhere)
    assert history.returncode == 0 and "a000000000000" in history.stdout

    set_script_location(ini, "nowhere")
    line = one_error_line(cli("current", *common, cwd=elsewhere))
    assert "no env.py" in line and str(elsewhere / "nowhere") in line
    assert str(tmp_path / "site-packages" / "nowhere") in line
