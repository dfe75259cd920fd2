"""``migrate`` on a busy database: bounded lock waits, retries, timeouts (real servers).

A session holding a lock on a table the migration alters must not make the migration hang,
nor the application's queries on that table queue behind the migration for long.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.alembic_projects import Rev, linear_chain, make_project

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "umt_migrations"]
LOCK_TIMEOUT = 1.0  #: whole seconds: MySQL/MariaDB take no fraction
#: what an attempt may take beyond the lock timeout (the step's own statements, a loaded box)
MARGIN = 0.4
ALTER = "d000000000001"
AFTER = "d000000000002"


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    fixture = {"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]
    return str(request.getfixturevalue(fixture))


def hot_project(root: Path, url: str, *, alter_module: list[str] | None = None) -> Path:
    """Two revisions, then one altering the hot table ``hot``, then one more."""
    revs = linear_chain(1)
    revs.append(Rev(ALTER, revs[-1].id, "alter hot",
                    upgrade_sql=["ALTER TABLE hot ADD COLUMN note VARCHAR(20)"],
                    module_python=alter_module or []))
    revs.append(Rev(AFTER, ALTER, "after",
                    upgrade_sql=["CREATE TABLE after_hot (id INTEGER PRIMARY KEY)"]))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hot (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO hot (id) VALUES (1), (2)")
    engine.dispose()
    return make_project(root, revs)


@contextmanager
def blocker(url: str) -> Iterator[sa.Connection]:
    """A session with an open transaction that read ``hot`` (ACCESS SHARE / a shared MDL)."""
    engine = sa.create_engine(url)
    conn = engine.connect()
    try:
        conn.exec_driver_sql("SELECT * FROM hot").fetchall()
        yield conn
    finally:
        if conn.in_transaction():
            conn.rollback()
        conn.close()
        engine.dispose()


def session_pid(conn: sa.Connection) -> int:
    pg = conn.dialect.name == "postgresql"
    query = "SELECT pg_backend_pid()" if pg else "SELECT CONNECTION_ID()"
    return int(conn.exec_driver_sql(query).scalar_one())


class Migration:
    """``migrate`` as a process, its log read as it comes."""

    def __init__(self, ini: Path, url: str, *args: str, to: str = "head") -> None:
        self.report_path = ini.parent / f"report-{time.monotonic_ns()}.json"
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*CLI, "migrate", "--config", str(ini), "--url", url, "--report",
             str(self.report_path), "--to", to, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ini.parent,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def finish(self, timeout: float = 120) -> tuple[int, dict, str]:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        report = json.loads(self.report_path.read_text()) if self.report_path.exists() else {}
        return self.proc.returncode, report, "".join(self.lines)


def applied_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT revision, COUNT(*) FROM applied_log WHERE direction = 'up' "
                "GROUP BY revision"
            ).fetchall()
            return {r[0]: int(r[1]) for r in rows}
    finally:
        engine.dispose()


def hot_columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("hot")}
    finally:
        engine.dispose()


class Reader(threading.Thread):
    """The application: a plain SELECT on ``hot`` in a loop, each timed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.latencies: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.halt.is_set():
                began = time.monotonic()
                conn.exec_driver_sql("SELECT COUNT(*) FROM hot").scalar()
                self.latencies.append(time.monotonic() - began)
                time.sleep(0.02)

    def stop(self) -> list[float]:
        self.halt.set()
        self.join(timeout=30)
        self.engine.dispose()
        return self.latencies


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_lock_waits_are_bounded_retried_and_the_app_keeps_reading(
    tmp_path: Path, server_url: str
) -> None:
    ini = hot_project(tmp_path, server_url)
    reader = Reader(server_url)
    with blocker(server_url) as holder:
        pid = session_pid(holder)
        reader.start()
        run = Migration(ini, server_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "20")
        wait_for(lambda: run.count("failed (lock timeout") >= 2 or run.proc.poll() is not None,
                 what="two failed attempts")
        assert run.proc.poll() is None, "the migration must wait while the blocker holds its lock"
        time.sleep(0.5)  # the app keeps reading during a back-off and a third attempt
        holder.rollback()  # the long transaction ends
        code, report, log = run.finish()
    latencies = reader.stop()
    assert code == 0, log
    assert report["ok"] is True and report["toRevision"] == AFTER
    retries = report["retries"]
    assert len(retries) >= 2 and report["attempts"] == len(retries) + 1
    for retry in retries:  # each attempt gave up within the lock timeout
        assert retry["revision"] == ALTER and retry["reason"] == "LockTimeout"
        assert LOCK_TIMEOUT - 0.05 <= retry["waitedSeconds"] <= LOCK_TIMEOUT + MARGIN, retry
        assert retry["blocker"] and retry["blocker"].startswith(f"pid {pid} "), retry
    # the application was never held up longer than the lock timeout (+ 0.5 s)
    assert len(latencies) > 10 and max(latencies) <= LOCK_TIMEOUT + 0.5, max(latencies)
    # every revision ran exactly once, the altered one included
    counts = applied_counts(server_url)
    assert len(counts) == 4 and set(counts.values()) == {1}, counts
    assert "note" in hot_columns(server_url)
    assert "attempt 1 of 21 failed" in log and f"pid {pid}" in log


def test_out_of_attempts_is_a_lock_timeout_at_the_last_committed_revision(
    tmp_path: Path, server_url: str
) -> None:
    ini = hot_project(tmp_path, server_url)
    with blocker(server_url) as holder:
        pid = session_pid(holder)
        run = Migration(ini, server_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "2")
        code, report, log = run.finish()
    assert code == 1, log  # transient: the Job may retry later
    error = report["error"]
    assert error["reason"] == "LockTimeout" and error["revision"] == ALTER
    assert error["attempts"] == "3" and error["blocker"].startswith(f"pid {pid} ")
    assert len(report["retries"]) == 3 and report["attempts"] == 3
    assert all(r["waitedSeconds"] <= LOCK_TIMEOUT + MARGIN for r in report["retries"])
    before = report["applied"][-1]
    assert report["toRevision"] == before and ALTER not in report["applied"]
    counts = applied_counts(server_url)
    assert ALTER not in counts and AFTER not in counts and set(counts.values()) == {1}
    assert "note" not in hot_columns(server_url)
    assert report["safety"] == {"stepLockTimeoutSeconds": LOCK_TIMEOUT,
                                "statementTimeoutSeconds": None, "lockRetries": 2,
                                "connectTimeoutSeconds": 10.0}


def test_a_revision_that_declares_a_longer_wait_waits_that_long(
    tmp_path: Path, server_url: str
) -> None:
    ini = hot_project(tmp_path, server_url, alter_module=["lock_timeout = 2"])
    with blocker(server_url):
        run = Migration(ini, server_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "0")
        code, report, log = run.finish()
    assert code == 1 and report["error"]["reason"] == "LockTimeout", log
    (retry,) = report["retries"]
    assert 2.0 - 0.05 <= retry["waitedSeconds"] <= 2.0 + MARGIN, retry
    assert report["declared"] == {ALTER: {"lockTimeout": 2.0}}


def test_a_revision_that_declares_no_limit_waits_for_the_blocker(
    tmp_path: Path, server_url: str
) -> None:
    ini = hot_project(tmp_path, server_url, alter_module=["lock_timeout = None"])
    with blocker(server_url) as holder:
        run = Migration(ini, server_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "0")
        time.sleep(3 * LOCK_TIMEOUT + 1.5)  # several lock timeouts: it still waits
        assert run.proc.poll() is None, "".join(run.lines)
        holder.rollback()
        code, report, log = run.finish()
    assert code == 0, log
    assert "retries" not in report and report["attempts"] == 1
    assert report["declared"] == {ALTER: {"lockTimeout": None}}
    assert set(applied_counts(server_url).values()) == {1}


def test_a_deadlock_is_retried(tmp_path: Path, pg_url: str) -> None:
    """The revision locks ``hot`` then wants ``other``; the blocker holds ``other`` and then
    wants ``hot``: PostgreSQL kills the revision (it waited first), which is retried."""
    revs = linear_chain(1)
    revs.append(Rev(ALTER, revs[-1].id, "alter two tables",
                    upgrade_sql=["ALTER TABLE hot ADD COLUMN note VARCHAR(20)",
                                 "ALTER TABLE other ADD COLUMN note VARCHAR(20)"]))
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hot (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    ini = make_project(tmp_path, revs)
    monitor = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as holder:
        holder.exec_driver_sql("SET deadlock_timeout = '30s'")  # the revision detects it
        holder.exec_driver_sql("SELECT * FROM other").fetchall()
        run = Migration(ini, pg_url, "--step-lock-timeout", "20", "--lock-retries", "3")
        wait_for(lambda: monitor.exec_driver_sql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'other' AND NOT l.granted").scalar_one() > 0,
            what="the revision waiting for 'other'")
        holder.exec_driver_sql("SELECT * FROM hot").fetchall()  # closes the cycle
        holder.rollback()
        code, report, log = run.finish()
    monitor.close()
    engine.dispose()
    assert code == 0, log
    (retry,) = report["retries"]
    assert retry["reason"] == "Deadlock" and retry["revision"] == ALTER
    assert applied_counts(pg_url)[ALTER] == 1


def test_a_statement_timeout_stops_the_revision(tmp_path: Path, server_url: str) -> None:
    revs = linear_chain(1)
    sleep = "SELECT pg_sleep(5)" if server_url.startswith("postgresql") else "SELECT SLEEP(5)"
    revs.append(Rev(ALTER, revs[-1].id, "slow", upgrade_sql=[sleep]))
    ini = make_project(tmp_path, revs)
    run = Migration(ini, server_url, "--statement-timeout", "0.5")
    code, report, log = run.finish()
    assert code == 3, log
    assert report["error"]["reason"] == "StatementTimeout" and report["error"]["revision"] == ALTER
    assert "0.5 s" in report["error"]["message"]
    assert report["toRevision"] == revs[1].id and ALTER not in applied_counts(server_url)
    assert time.monotonic() - run.started < 5  # stopped, not run to its end


@contextmanager
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = threading.Event()
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        done.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


SILENT_URLS = {
    "postgresql": "postgresql://app:secret-pw@127.0.0.1:{port}/app",
    "mariadb": "mysql://app:secret-pw@127.0.0.1:{port}/app",
}


@pytest.mark.parametrize("backend", sorted(SILENT_URLS))
def test_a_server_that_never_answers_fails_the_connect_in_bounded_time(
    tmp_path: Path, backend: str
) -> None:
    ini = make_project(tmp_path, linear_chain(1))
    with silent_server() as (port, accepted):
        url = SILENT_URLS[backend].format(port=port)
        run = Migration(ini, url, "--connect-timeout", "2")
        code, report, log = run.finish(timeout=60)
        elapsed = time.monotonic() - run.started
    assert accepted.is_set()
    assert code == 1, log
    assert report["error"]["reason"] == "DatabaseUnavailable"
    assert "secret-pw" not in log + json.dumps(report)
    assert elapsed < 2 + 4, elapsed  # the timeout, plus the interpreter starting


@pytest.mark.parametrize("backend", sorted(SILENT_URLS))
def test_sigterm_during_a_connect_ends_the_run_at_once(tmp_path: Path, backend: str) -> None:
    ini = make_project(tmp_path, linear_chain(1))
    with silent_server() as (port, accepted):
        url = SILENT_URLS[backend].format(port=port)
        run = Migration(ini, url, "--connect-timeout", "60")
        wait_for(accepted.is_set, what="the connection attempt")
        time.sleep(0.3)  # inside the driver's connect
        signalled = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        code, report, log = run.finish(timeout=30)
        ended = time.monotonic() - signalled
    assert ended < 2.0, (ended, log)
    assert code == 1 and report["error"]["reason"] == "Interrupted", log
    assert "while connecting" in report["error"]["message"]


@pytest.mark.parametrize("backend", sorted(SILENT_URLS))
def test_current_and_the_gate_bound_their_connects_too(tmp_path: Path, backend: str) -> None:
    ini = make_project(tmp_path, linear_chain(1))
    with silent_server() as (port, _accepted):
        url = SILENT_URLS[backend].format(port=port)
        env = {**os.environ, "DATABASE_URL": url}
        began = time.monotonic()
        gate = subprocess.run([*CLI, "--config", str(ini), "wait-for-schema", "--timeout", "3"],
                              capture_output=True, text=True, timeout=60, env=env)
        gate_took = time.monotonic() - began
        began = time.monotonic()
        current = subprocess.run([*CLI, "--config", str(ini), "current"],
                                 capture_output=True, text=True, timeout=60, env=env)
        current_took = time.monotonic() - began
    assert gate.returncode == 4 and gate_took < 3 + 4, (gate_took, gate.stderr)
    assert current.returncode == 1 and current_took < 10 + 4, (current_took, current.stderr)
    assert "secret-pw" not in gate.stdout + gate.stderr + current.stdout + current.stderr


@pytest.mark.parametrize("env_style", ["second_connection", "single_transaction"])
def test_bounds_reach_the_connection_env_py_opens_itself(
    tmp_path: Path, pg_url: str, env_style: str
) -> None:
    """SET LOCAL goes to the connection the project's env.py configured; a run-wide
    transaction is retried whole, and still runs each revision once."""
    revs = linear_chain(1)
    revs.append(Rev(ALTER, revs[-1].id, "alter hot",
                    upgrade_sql=["ALTER TABLE hot ADD COLUMN note VARCHAR(20)"]))
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hot (id INTEGER PRIMARY KEY)")
    engine.dispose()
    ini = make_project(tmp_path, revs, env_style=env_style)
    with blocker(pg_url) as holder:
        run = Migration(ini, pg_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "20")
        wait_for(lambda: run.count("failed (lock timeout") >= 1 or run.proc.poll() is not None,
                 what="a failed attempt")
        assert run.proc.poll() is None, "".join(run.lines)
        holder.rollback()
        code, report, log = run.finish()
    assert code == 0, log
    assert all(r["waitedSeconds"] <= LOCK_TIMEOUT + MARGIN for r in report["retries"])
    counts = applied_counts(pg_url)
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    assert report["applied"] == [r.id for r in revs]


def test_mariadb_does_not_retry_a_revision_that_already_changed_something(
    tmp_path: Path, mariadb_url: str
) -> None:
    ini = hot_project(tmp_path, mariadb_url)
    text = (ini.parent / "migrations" / "versions" / f"{ALTER}.py").read_text()
    (ini.parent / "migrations" / "versions" / f"{ALTER}.py").write_text(text.replace(
        "op.execute('ALTER TABLE hot",
        "op.execute('CREATE TABLE made_first (id INTEGER PRIMARY KEY)')\n    "
        "op.execute('ALTER TABLE hot"))
    with blocker(mariadb_url):
        run = Migration(ini, mariadb_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "5")
        code, report, log = run.finish()
    assert code == 3, log
    error = report["error"]
    assert error["reason"] == "MigrationFailed" and error["revision"] == ALTER
    assert "not retried" in error["message"] and "not transactional" in error["message"]
    assert "retries" not in report and report["attempts"] == 1
    engine = sa.create_engine(mariadb_url)
    try:
        assert "made_first" in sa.inspect(engine).get_table_names()  # what stayed, as said
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_env_py_engines_get_the_connect_timeout_and_keepalives(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """The bounds are set by class-level events, so an engine created the way an env.py
    creates one (from the URL alone) gets them: read back from the socket itself."""
    from umt_migrations.connectbounds import ConnectBounds, bounded_connections

    url = str(request.getfixturevalue({"postgresql": "pg_url", "mariadb": "mariadb_url"}[backend]))
    with bounded_connections(ConnectBounds(keepalive_idle=7, keepalive_count=4)):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            if backend == "postgresql":
                sock = socket.socket(fileno=os.dup(raw.fileno()))  # type: ignore[attr-defined]
                assert raw.get_dsn_parameters()["connect_timeout"] == "10"  # type: ignore[attr-defined]
            else:
                sock = raw._sock  # type: ignore[attr-defined]
                assert raw._read_timeout is None  # type: ignore[attr-defined]
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
            finally:
                if backend == "postgresql":
                    sock.close()
        engine.dispose()


def test_create_index_concurrently_in_an_autocommit_block_waits_and_is_reported(
    tmp_path: Path, pg_url: str
) -> None:
    """What a revision runs in ``autocommit_block()`` is outside its transaction and its
    ``SET LOCAL``: a concurrent index build waits for the older transaction (without blocking
    the application) instead of failing and leaving an invalid index behind."""
    revs = linear_chain(1)
    revs.append(Rev(ALTER, revs[-1].id, "index hot concurrently", upgrade_python=[
        "with op.get_context().autocommit_block():",
        "    op.execute('CREATE INDEX CONCURRENTLY ix_hot_id ON hot (id)')",
    ]))
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hot (id INTEGER PRIMARY KEY)")
    engine.dispose()
    ini = make_project(tmp_path, revs)
    with blocker(pg_url) as holder:
        holder.exec_driver_sql("INSERT INTO hot (id) VALUES (1)")  # a writer: CIC waits for it
        run = Migration(ini, pg_url, "--step-lock-timeout", str(LOCK_TIMEOUT),
                        "--lock-retries", "0")
        time.sleep(3 * LOCK_TIMEOUT + 1.0)
        assert run.proc.poll() is None, "".join(run.lines)  # still waiting, not failed
        holder.rollback()
        code, report, log = run.finish()
    assert code == 0, log
    assert report["declared"] == {ALTER: {"outsideTransaction": True}}
    assert "retries" not in report
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            valid = conn.exec_driver_sql(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_hot_id'::regclass"
            ).scalar_one()
    finally:
        engine.dispose()
    assert valid is True


SLEEPS = {"postgresql": "SELECT pg_sleep(120)", "mysql": "SELECT SLEEP(120)"}


def client_port_of(url: str, query: str) -> int | None:
    """The client-side TCP port of the session running ``query`` (None until it runs)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                row = conn.exec_driver_sql(
                    "SELECT client_port FROM pg_stat_activity WHERE query = %(q)s "
                    "AND state = 'active'", {"q": query}).first()
                return int(row[0]) if row else None
            row = conn.exec_driver_sql(
                "SELECT HOST FROM information_schema.PROCESSLIST WHERE INFO = %(q)s",
                {"q": query}).first()
            return int(str(row[0]).rsplit(":", 1)[1]) if row else None
    finally:
        engine.dispose()


@contextmanager
def network_cut(port: int) -> Iterator[None]:
    """Every packet of one loopback TCP connection dropped, both ways, as a cut cable does:
    the peer neither answers nor resets (iptables, root; the rules go when the block ends)."""
    rules = [["INPUT", "-i", "lo", "-p", "tcp", side, str(port), "-j", "DROP"]
             for side in ("--sport", "--dport")]
    for rule in rules:
        done = subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:  # required, never skipped: the test needs root and iptables
            pytest.fail(f"cannot cut the connection with iptables: {done.stderr.strip()}",
                        pytrace=False)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False)


def test_a_network_cut_mid_revision_fails_in_bounded_time(tmp_path: Path, server_url: str) -> None:
    """Issue 14, "a cut network is bounded too": the runner's connection goes silent while a
    revision runs (every packet dropped, no reset). TCP keepalives (idle 10 s, 3 probes 5 s
    apart) end the run in about 25 s with DatabaseUnavailable naming the revision, where
    without them the runner waits as long as the kernel keeps the connection: hours."""
    sleep = SLEEPS["postgresql" if server_url.startswith("postgresql") else "mysql"]
    revs = linear_chain(1)
    revs.append(Rev(ALTER, revs[-1].id, "long statement", upgrade_sql=[sleep]))
    ini = make_project(tmp_path, revs)
    run = Migration(ini, server_url)
    port = None
    deadline = time.monotonic() + 30
    while port is None:
        assert time.monotonic() < deadline and run.proc.poll() is None, "".join(run.lines)
        time.sleep(0.1)
        port = client_port_of(server_url, sleep)
    try:
        with network_cut(port):
            cut = time.monotonic()
            code, report, log = run.finish(timeout=90)
            noticed = time.monotonic() - cut
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert code == 1, log
    assert report["error"]["reason"] == "DatabaseUnavailable", report
    assert report["error"].get("revision") == ALTER, report
    assert 10 <= noticed < 25 + 15, noticed  # keepalive idle .. idle + 3 probes + a margin
