"""``umt-migrations migrate``: the command every Job runs, as a process, on real databases."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.alembic_projects import (
    ENV_STYLES,
    LOG_TABLE,
    Rev,
    linear_chain,
    make_project,
    set_script_location,
)
from umt_migrations.locking import migration_lock

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "umt_migrations"]


def run_migrate(ini: Path, url: str, *args: str, cwd: Path | None = None, env: dict | None = None,
                timeout: float = 120) -> tuple[int, dict, str, str]:
    """Run ``migrate`` like a Job does; return (exit code, report, stdout, stderr)."""
    # The report goes to a scratch folder, never beside the ini (the repository's own
    # alembic.ini sits in the repository root).
    scratch = Path(tempfile.mkdtemp(prefix="umt-report-"))
    report = scratch / "report.json"
    proc = subprocess.run(
        [*CLI, "migrate", "--config", str(ini), "--url", url, "--report", str(report), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or ini.parent,
        env={**os.environ, **(env or {})},
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    shutil.rmtree(scratch, ignore_errors=True)
    return proc.returncode, data, proc.stdout, proc.stderr


def log_rows(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT revision, direction FROM applied_log"))
            return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    fixture = {"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]
    return request.getfixturevalue(fixture)


def test_upgrade_noop_and_downgrade_only_when_allowed(tmp_path: Path, server_url: str) -> None:
    revs = linear_chain(3)
    ini = make_project(tmp_path, revs)
    head, first = revs[-1].id, revs[1].id

    code, report, stdout, stderr = run_migrate(ini, server_url, "--to", "head")
    assert code == 0, stderr
    assert report["ok"] is True and report["direction"] == "upgrade"
    assert report["fromRevision"] is None and report["toRevision"] == head
    assert report["applied"] == [r.id for r in revs]
    assert json.loads(stdout) == report
    for rev in revs:  # one readable line per step, with its id and duration
        assert any(rev.id in line and " done in " in line for line in stderr.splitlines())

    code, report, _, _ = run_migrate(ini, server_url, "--to", "head")
    assert (code, report["direction"], report["applied"]) == (0, "none", [])

    # A move to an ancestor is a downgrade, never a silent no-op.
    code, report, _, stderr = run_migrate(ini, server_url, "--to", first)
    assert code == 2
    assert report["error"]["reason"] == "DowngradeNotAllowed"
    assert report["fromRevision"] == head and report["toRevision"] == head
    assert "DowngradeNotAllowed" in stderr and "Traceback" not in stderr

    code, report, _, _ = run_migrate(ini, server_url, "--to", first, "--allow-downgrade")
    assert code == 0
    assert report["direction"] == "downgrade" and report["toRevision"] == first
    assert report["applied"] == [revs[3].id, revs[2].id]
    assert log_rows(server_url).count((revs[3].id, "down")) == 1


@pytest.mark.parametrize(
    ("target", "reason"),
    [("deadbeef0000", "RevisionNotFound"), ("+1", "InvalidSpec"), ("head-1", "InvalidSpec"),
     ("head", "MultipleHeads")],
)
def test_invalid_requests_exit_2_before_touching_the_database(
    tmp_path: Path, pg_url: str, target: str, reason: str
) -> None:
    revs = linear_chain(2)
    revs.append(Rev("b0000000001", revs[1].id, "side branch", branch_labels=("side",)))
    ini = make_project(tmp_path, revs)
    code, report, _, stderr = run_migrate(ini, pg_url, "--to", target)
    assert code == 2, stderr
    assert report["ok"] is False and report["error"]["reason"] == reason
    assert "Traceback" not in stderr
    assert table_names(pg_url) == set()


def test_revision_ids_as_real_projects_write_them(tmp_path: Path, pg_url: str) -> None:
    """Ids with dots, leading digits and underscores (any id Alembic allows) work end to end."""
    first = Rev("0001_initial", None, "create applied_log", upgrade_sql=[LOG_TABLE])
    users = Rev("2024_01_05_add_users", first.id, "add users",
                upgrade_sql=["CREATE TABLE users (id INTEGER PRIMARY KEY)"],
                downgrade_sql=["DROP TABLE users"])
    tagged = Rev("v3.0.0.c", users.id, "release 3.0.0.c",
                 upgrade_sql=["CREATE TABLE brands (id INTEGER PRIMARY KEY)"],
                 downgrade_sql=["DROP TABLE brands"])
    ini = make_project(tmp_path, [first, users, tagged])

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "2024_01_05_add_users")
    assert code == 0, stderr
    assert report["applied"] == ["0001_initial", "2024_01_05_add_users"]
    assert report["toRevision"] == report["targetRevision"] == "2024_01_05_add_users"

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "v3.0.0.c")
    assert code == 0, stderr
    assert report["applied"] == ["v3.0.0.c"] and report["toRevision"] == "v3.0.0.c"
    assert {"users", "brands"} <= table_names(pg_url)

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "0001_initial", "--allow-downgrade")
    assert code == 0, stderr
    assert report["direction"] == "downgrade" and report["toRevision"] == "0001_initial"
    assert report["applied"] == ["v3.0.0.c", "2024_01_05_add_users"]
    assert not {"users", "brands"} & table_names(pg_url)

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "2024_01")  # a unique prefix
    assert code == 0, stderr
    assert report["toRevision"] == "2024_01_05_add_users"

    code, report, _, _ = run_migrate(ini, pg_url, "--to", "v3.0.0.c-1")  # '-' inside an id
    assert code == 2 and report["error"]["reason"] == "InvalidSpec"
    assert "not a revision identifier" in report["error"]["message"]


def test_branches_and_merge_point(tmp_path: Path, pg_url: str) -> None:
    revs = linear_chain(2)
    base_id, c1, c2 = (r.id for r in revs)
    revs += [
        Rev("b0000000001", c1, "feature branch", branch_labels=("feature",),
            upgrade_sql=["CREATE TABLE feature_t (id INTEGER)"],
            downgrade_sql=["DROP TABLE feature_t"]),
        Rev("m0000000001", (c2, "b0000000001"), "merge feature"),
    ]
    ini = make_project(tmp_path, revs[:-1])  # the merge is written later

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "feature@head")
    assert code == 0, stderr
    assert report["toRevision"] == "b0000000001"
    assert report["applied"] == [base_id, c1, "b0000000001"]

    # c2 sits on the other branch: neither an upgrade nor a downgrade reaches it.
    code, report, _, _ = run_migrate(ini, pg_url, "--to", c2)
    assert code == 2 and report["error"]["reason"] == "InvalidSpec"
    assert "another branch" in report["error"]["message"]

    make_project(tmp_path, revs)  # the merge point arrives with the next release
    code, report, _, _ = run_migrate(ini, pg_url, "--to", "head")  # the merge point
    assert code == 0
    assert report["applied"] == [c2, "m0000000001"] and report["toRevision"] == "m0000000001"

    code, report, _, _ = run_migrate(ini, pg_url, "--to", c1, "--allow-downgrade")
    assert code == 0 and report["toRevision"] == c1
    assert sorted(report["applied"]) == sorted(["m0000000001", c2, "b0000000001"])
    assert "feature_t" not in table_names(pg_url)


def lock_waiters(conn: sa.Connection) -> int:
    """Sessions queued for a lock the test holds: advisory on PostgreSQL, GET_LOCK on MariaDB."""
    if conn.dialect.name == "postgresql":
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    else:
        # %% : SQLAlchemy hands PyMySQL an empty parameter list, so it %-formats the text
        query = ("SELECT count(*) FROM information_schema.processlist "
                 "WHERE state = 'User lock' AND info LIKE 'SELECT GET_LOCK%%'")
    return int(conn.exec_driver_sql(query).scalar_one())


@pytest.mark.parametrize("runners", [2, 5])
def test_concurrent_runners_apply_each_revision_once(
    tmp_path: Path, server_url: str, runners: int
) -> None:
    """Runners queued on the migration lock at once: one upgrades, the others find nothing to do.

    The test holds the lock until every runner is seen waiting for it (by the server, not by
    timing), so the overlap does not depend on how fast the processes start on a busy machine.
    """
    revs = linear_chain(6)
    ini = make_project(tmp_path, revs)
    reports = [tmp_path / f"r{i}.json" for i in range(runners)]
    engine = sa.create_engine(server_url)
    try:
        with engine.connect() as holder:
            with migration_lock(holder, timeout=0):
                procs = [
                    subprocess.Popen(
                        [*CLI, "migrate", "--config", str(ini), "--url", server_url, "--to",
                         "head", "--report", str(path), "--lock-timeout", "60"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    )
                    for path in reports
                ]
                deadline = time.monotonic() + 60
                with engine.connect() as watcher:
                    while lock_waiters(watcher) < runners:
                        assert time.monotonic() < deadline, "runners never queued on the lock"
                        assert all(proc.poll() is None for proc in procs), "a runner ended"
                        time.sleep(0.05)
            outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        engine.dispose()
    assert [p.returncode for p in procs] == [0] * runners, outputs
    results = [json.loads(path.read_text()) for path in reports]
    assert all(r["toRevision"] == revs[-1].id for r in results)
    assert sorted(r["direction"] for r in results) == ["none"] * (runners - 1) + ["upgrade"]
    assert sorted(log_rows(server_url)) == sorted((r.id, "up") for r in revs)
    assert all("waiting up to 60 s for the migration lock" in err for _, err in outputs)


def test_failing_revision_leaves_last_committed_revision(tmp_path: Path, server_url: str) -> None:
    revs = linear_chain(4)
    revs[3].fail = True  # c3 creates its table, logs, then fails
    ini = make_project(tmp_path, revs)
    code, report, _, stderr = run_migrate(ini, server_url, "--to", "head")
    assert code == 3, stderr
    assert report["error"]["reason"] == "MigrationFailed"
    assert report["error"]["revision"] == revs[3].id
    assert "table_that_does_not_exist" in report["error"]["message"]
    assert report["toRevision"] == revs[2].id
    assert report["applied"] == [r.id for r in revs[:3]]
    assert "Traceback" not in stderr
    ups = [rev for rev, direction in log_rows(server_url) if direction == "up"]
    if "postgresql" in server_url:  # transactional DDL: the failed revision left nothing
        assert ups == [r.id for r in revs[:3]]
        assert f"t_{revs[3].id}" not in table_names(server_url)

    # Fix the script and run again: it continues from where the database was left.
    revs[3].fail = False
    if "mysql" in server_url:  # MariaDB DDL is not transactional: the table stayed behind
        revs[3].upgrade_sql = [f"CREATE TABLE IF NOT EXISTS t_{revs[3].id} (id INTEGER)"]
    make_project(tmp_path, revs)
    code, report, _, stderr = run_migrate(ini, server_url, "--to", "head")
    assert code == 0, stderr
    assert report["fromRevision"] == revs[2].id and report["applied"] == [revs[3].id, revs[4].id]


def test_huge_error_still_gives_a_small_valid_report(tmp_path: Path, pg_url: str) -> None:
    revs = linear_chain(1)
    revs[1].upgrade_python = ["raise RuntimeError('bad data: ' + 'é' * 20000)"]
    ini = make_project(tmp_path, revs)
    report_file = tmp_path / "termination-log"
    proc = subprocess.run(
        [*CLI, "migrate", "--config", str(ini), "--url", pg_url, "--to", "head"],
        capture_output=True, text=True,
        env={**os.environ, "TERMINATION_MESSAGE_PATH": str(report_file)},
    )
    assert proc.returncode == 3
    raw = report_file.read_bytes()
    assert len(raw) <= 4096
    report = json.loads(raw)
    assert report["error"]["reason"] == "MigrationFailed"
    assert report["error"]["message"].endswith("…")


def test_unreachable_database_is_transient_and_hides_the_password(tmp_path: Path) -> None:
    ini = make_project(tmp_path, linear_chain(1))
    url = "postgresql://umt:Sup3rS3cretPw@127.0.0.1:1/umt"
    code, report, stdout, stderr = run_migrate(ini, url, "--to", "head")
    assert code == 1
    assert report["error"]["reason"] == "DatabaseUnavailable"
    assert "127.0.0.1:1" in report["error"]["message"]
    output = stdout + stderr + json.dumps(report)
    assert "Sup3rS3cretPw" not in output and "Traceback" not in output


def test_lock_timeout_is_transient(tmp_path: Path, server_url: str) -> None:
    from umt_migrations.locking import LOCK_NAME, PG_LOCK_KEY

    ini = make_project(tmp_path, linear_chain(1))
    engine = sa.create_engine(server_url)
    with engine.connect() as holder:  # another migration holds the lock
        if holder.dialect.name == "postgresql":
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            who = f"backend pid {holder.execute(sa.text('SELECT pg_backend_pid()')).scalar()}"
        else:
            name = f"{LOCK_NAME}:{holder.execute(sa.text('SELECT DATABASE()')).scalar()}"
            assert holder.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar() == 1
            who = f"connection {holder.execute(sa.text('SELECT CONNECTION_ID()')).scalar()}"
        holder.commit()
        code, report, _, stderr = run_migrate(ini, server_url, "--to", "head",
                                              "--lock-timeout", "1")
    engine.dispose()
    assert code == 1, stderr
    assert report["error"]["reason"] == "LockTimeout"
    assert f"held by {who}" in stderr
    assert "alembic_version" not in table_names(server_url)


def test_sigterm_rolls_back_the_revision_in_progress(tmp_path: Path, pg_url: str) -> None:
    revs = linear_chain(2)
    revs[2].upgrade_sql.append("SELECT pg_sleep(60)")
    ini = make_project(tmp_path, revs)
    report_file = tmp_path / "report.json"
    proc = subprocess.Popen(
        [*CLI, "migrate", "--config", str(ini), "--url", pg_url, "--to", "head",
         "--report", str(report_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    engine = sa.create_engine(pg_url)
    try:
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while time.monotonic() < deadline:  # wait until the slow statement runs
                sleeping = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' "
                    "AND state = 'active'")).scalar()
                conn.rollback()
                if sleeping:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the slow revision never started")
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
    assert proc.returncode == 1, stderr
    assert stopped_after < 20  # cancelled, not waited out (the statement sleeps 60 s)
    report = json.loads(report_file.read_text())
    assert report["error"]["reason"] == "Interrupted"
    assert report["toRevision"] == revs[1].id
    assert f"t_{revs[2].id}" not in table_names(pg_url)
    assert "Traceback" not in stderr


@pytest.mark.parametrize("relative", [False, True], ids=["here-path", "relative-path"])
@pytest.mark.parametrize("env_style", ENV_STYLES)
def test_any_alembic_project(tmp_path: Path, pg_url: str, env_style: str, relative: bool) -> None:
    project = tmp_path / "project"
    revs = linear_chain(3)
    ini = make_project(project, revs, env_style=env_style, relative_script_location=relative)
    elsewhere = tmp_path / "elsewhere"  # the runner is not started in the project's folder
    elsewhere.mkdir()

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", "head", cwd=elsewhere)
    assert code == 0, stderr
    assert report["toRevision"] == revs[-1].id and len(report["applied"]) == 4
    version_table = "schema_history" if env_style == "custom_version_table" else "alembic_version"
    assert version_table in table_names(pg_url)

    code, report, _, stderr = run_migrate(ini, pg_url, "--to", revs[1].id, "--allow-downgrade",
                                          cwd=elsewhere)
    assert code == 0, stderr
    assert report["toRevision"] == revs[1].id and report["applied"] == [revs[3].id, revs[2].id]
    assert sorted(log_rows(pg_url)) == sorted(
        [(r.id, "up") for r in revs] + [(revs[3].id, "down"), (revs[2].id, "down")])
    assert not list(elsewhere.glob("*.db")), "no stray SQLite file may appear"


def relative_layout(tmp_path: Path, layout: str) -> tuple[Path, Path]:
    """A project whose relative script_location only works from one directory: (ini, that dir).

    - ``dot``: the ini sits in the migrations folder itself (``script_location = .``);
    - ``parent``: as installed in site-packages, the path is relative to the ini's parent
      (``myapp/migrations``), which the project's own code would make absolute;
    - ``cwd``: relative to where its users run it, not to the ini (``config/alembic.ini``).
    """
    revs = linear_chain(2)
    if layout == "dot":
        make_project(tmp_path / "app", revs, relative_script_location=True)
        ini = (tmp_path / "app" / "alembic.ini").rename(tmp_path / "app/migrations/alembic.ini")
        set_script_location(ini, ".")
        return ini, ini.parent
    if layout == "parent":
        ini = make_project(tmp_path / "site-packages" / "myapp", revs,
                           relative_script_location=True)
        set_script_location(ini, "myapp/migrations")
        return ini, tmp_path / "site-packages"
    ini = make_project(tmp_path / "app", revs, relative_script_location=True)
    (tmp_path / "app" / "config").mkdir()
    return ini.rename(tmp_path / "app" / "config" / "alembic.ini"), tmp_path / "app"


@pytest.mark.parametrize("layout", ["dot", "parent", "cwd"])
def test_relative_script_location_is_found_where_its_users_find_it(
    tmp_path: Path, pg_url: str, layout: str
) -> None:
    ini, home = relative_layout(tmp_path, layout)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = home if layout == "cwd" else elsewhere  # 'cwd': found only from the users' directory
    # (the later --report wins: a relative one, written where the runner was started)
    code, _, stdout, stderr = run_migrate(ini, pg_url, "--to", "head", "--report", "r.json",
                                          cwd=cwd)
    assert code == 0, stderr
    report = json.loads((cwd / "r.json").read_text())
    assert report == json.loads(stdout)
    assert report["toRevision"] == "c00000000002" and len(report["applied"]) == 3


def test_a_script_location_found_nowhere_names_every_place_tried(tmp_path: Path) -> None:
    ini, _ = relative_layout(tmp_path, "parent")
    set_script_location(ini, "lost/migrations")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, report, _, stderr = run_migrate(ini, f"sqlite:///{tmp_path / 'x.db'}", "--to", "head",
                                          cwd=elsewhere)
    assert code == 2 and "Traceback" not in stderr
    message = report["error"]["message"]
    assert report["error"]["reason"] == "InvalidSpec"
    tried = [elsewhere, ini.parent, *ini.parent.parents]
    places = [str(base / "lost" / "migrations") for base in tried]
    listed = message.split("in order: ", 1)[1].split(". Run from", 1)[0]
    assert listed.split(", ") == places, message


def test_single_transaction_project_reports_the_rollback(tmp_path: Path, pg_url: str) -> None:
    revs = linear_chain(3)
    revs[3].fail = True
    ini = make_project(tmp_path, revs, env_style="single_transaction")
    code, report, _, _ = run_migrate(ini, pg_url, "--to", "head")
    assert code == 3
    # The project's env.py wraps everything in one transaction: nothing stayed.
    assert report["toRevision"] is None and report["applied"] == []
    assert table_names(pg_url) == set()


@pytest.mark.parametrize("env_style", ["url_only", "standard"])
def test_a_downgrade_failing_midway_leaves_the_failing_revision(
    tmp_path: Path, server_url: str, env_style: str
) -> None:
    """Alembic's own env.py template runs everything in one transaction; the runner still
    commits each revision, so the steps before the failure stay done and the report says where
    the database is: at the revision whose downgrade failed."""
    revs = linear_chain(4)
    ini = make_project(tmp_path, revs, env_style=env_style)
    code, _, _, stderr = run_migrate(ini, server_url, "--to", "head")
    assert code == 0, stderr
    c1, c2, c3, c4 = (r.id for r in revs[1:])
    revs[2].fail_down = True  # c2's downgrade drops its table, then fails
    make_project(tmp_path, revs, env_style=env_style)

    code, report, _, stderr = run_migrate(ini, server_url, "--to", c1, "--allow-downgrade")
    assert code == 3 and "Traceback" not in stderr
    assert report["direction"] == "downgrade" and report["fromRevision"] == c4
    assert report["toRevision"] == c2, "the database is at the revision whose downgrade failed"
    assert report["applied"] == [c4, c3]
    assert report["error"]["reason"] == "MigrationFailed" and report["error"]["revision"] == c2
    assert "table_that_does_not_exist" in report["error"]["message"]
    tables = table_names(server_url)
    assert not {f"t_{c3}", f"t_{c4}"} & tables
    downs = [rev for rev, direction in log_rows(server_url) if direction == "down"]
    if "postgresql" in server_url:  # c2's half-done downgrade rolled back with it
        assert f"t_{c2}" in tables and downs == [c4, c3]
    else:  # MariaDB: DDL commits by itself, so c2's table is gone while the version says c2
        assert f"t_{c2}" not in tables and downs[:2] == [c4, c3]

    revs[2].fail_down = False  # fixed: the next run carries on from c2
    if "mysql" in server_url:
        revs[2].downgrade_sql = [f"DROP TABLE IF EXISTS t_{c2}"]
    make_project(tmp_path, revs, env_style=env_style)
    code, report, _, stderr = run_migrate(ini, server_url, "--to", c1, "--allow-downgrade")
    assert code == 0, stderr
    assert report["fromRevision"] == c2 and report["applied"] == [c2]


def test_a_project_that_opts_out_rolls_back_the_whole_downgrade(tmp_path: Path,
                                                                pg_url: str) -> None:
    """env.py says transaction_per_migration=False: one transaction, all or nothing."""
    revs = linear_chain(4)
    ini = make_project(tmp_path, revs, env_style="single_transaction")
    assert run_migrate(ini, pg_url, "--to", "head")[0] == 0
    revs[2].fail_down = True
    make_project(tmp_path, revs, env_style="single_transaction")
    code, report, _, _ = run_migrate(ini, pg_url, "--to", revs[1].id, "--allow-downgrade")
    assert code == 3
    assert report["toRevision"] == revs[4].id and report["applied"] == []
    assert report["error"]["revision"] == revs[2].id
    assert {f"t_{r.id}" for r in revs[1:]} <= table_names(pg_url)


def test_dry_run_prints_plan_and_sql_and_touches_nothing(tmp_path: Path, pg_url: str) -> None:
    revs = linear_chain(2)
    ini = make_project(tmp_path, revs)
    proc = subprocess.run(
        [*CLI, "migrate", "--config", str(ini), "--url", pg_url, "--to", "head", "--dry-run",
         "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "-- plan: upgrade base -> " in proc.stdout
    assert f"CREATE TABLE t_{revs[2].id}" in proc.stdout
    assert table_names(pg_url) == set()
    assert json.loads((tmp_path / "r.json").read_text())["dryRun"] is True


def test_sqlite_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    revs = linear_chain(2)
    ini = make_project(tmp_path, revs)
    code, report, _, stderr = run_migrate(ini, url, "--to", "head")
    assert code == 0, stderr
    code, report, _, _ = run_migrate(ini, url, "--to", "base", "--allow-downgrade")
    assert code == 0 and report["toRevision"] is None and len(report["applied"]) == 3


@pytest.mark.parametrize("args", [["--config", "/nowhere/alembic.ini"], ["--url", "::not a url::"],
                                  ["--config", "NO_SCRIPTS"]])
def test_a_bad_config_or_url_is_an_invalid_request(tmp_path: Path, args: list[str]) -> None:
    if "NO_SCRIPTS" in args:  # an ini whose script_location does not exist
        (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = /nowhere/migrations\n")
        args = ["--config", str(tmp_path / "alembic.ini")]
    report = tmp_path / "report.json"
    proc = subprocess.run([*CLI, "migrate", "--to", "head", "--report", str(report), *args],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads(report.read_text())["error"]["reason"] == "InvalidSpec"


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_broken_env_py_is_reported(tmp_path: Path, dry_run: bool) -> None:
    ini = make_project(tmp_path, linear_chain(1))
    (tmp_path / "migrations" / "env.py").write_text("raise ImportError('no module named myapp')\n")
    extra = ["--dry-run"] if dry_run else []
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, report, _, stderr = run_migrate(ini, url, "--to", "head", *extra)
    assert code == 3 and "Traceback" not in stderr
    assert report["error"]["reason"] == "MigrationFailed"
    assert "no module named myapp" in report["error"]["message"]
