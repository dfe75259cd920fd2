#!/usr/bin/env python3
"""The application's query latency on a hot table while a migration waits behind a long
transaction, with the runner's default lock bounds and without them, on PostgreSQL.

Scenario: the application reads the table ``hot`` (a plain ``SELECT`` by primary key, back to
back, from a few threads); a report query keeps a transaction open on ``hot`` for
``--hold`` seconds; meanwhile ``migrate --to head`` runs a revision that alters ``hot``.

- with the defaults (``--step-lock-timeout 2``, retries with back-off), the ALTER gives up
  its place in the lock queue after 2 s, so a SELECT waits at most that long;
  target: p99 and max <= lock timeout + 100 ms;
- with ``--step-lock-timeout 0`` (no bound: what Alembic does, and what the runner did
  before), the ALTER queues for as long as the transaction lasts and every SELECT queues
  behind it: the latency is the whole hold time (unbounded as the hold grows).

Each reader is open-loop (a query due every 10 ms, latency counted from when it was due), so
the queries a blocked reader could not send count as late instead of vanishing from the
statistics. Printed, not asserted (a loaded machine shifts the numbers; the integration
tests assert the bound). Usage:

    .venv/bin/python benchmarks/bench_busy_table.py [--hold 8] [--readers 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.alembic_projects import Rev, linear_chain, make_project  # noqa: E402

SERVER = os.environ.get("UMT_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
BIN = Path(sys.executable).parent
INTERVAL = 0.01  #: each reader's query rate: 100 per second


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def scenario(admin: sa.Engine, hold: float, readers: int, bounded: bool) -> dict[str, float]:
    name = f"umt_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    engine = sa.create_engine(url, pool_size=readers + 2)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE hot (id INTEGER PRIMARY KEY, v INTEGER)")
            conn.exec_driver_sql("INSERT INTO hot SELECT g, g FROM generate_series(1, 1000) g")
        revs = linear_chain(1)
        revs.append(Rev("d000000000001", revs[-1].id, "alter hot",
                        upgrade_sql=["ALTER TABLE hot ADD COLUMN note VARCHAR(20)"]))
        with tempfile.TemporaryDirectory() as tmp:
            ini = make_project(Path(tmp), revs)
            return _measure(engine, ini, url, hold, readers, bounded)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(engine: sa.Engine, ini: Path, url: str, hold: float, readers: int,
             bounded: bool) -> dict[str, float]:
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        """Open loop: a query every INTERVAL, its latency counted from when it was due, so a
        blocked reader's missed queries count too (no coordinated omission)."""
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            key, due = 1, time.perf_counter()
            while not stop.is_set():
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                conn.exec_driver_sql(f"SELECT v FROM hot WHERE id = {key}").scalar()
                latencies.append(time.perf_counter() - due)
                key, due = key % 1000 + 1, due + INTERVAL

    threads = [threading.Thread(target=read, daemon=True) for _ in range(readers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    report = engine.connect()  # the long transaction
    report.exec_driver_sql("SELECT count(*) FROM hot").scalar()
    lock = ["--step-lock-timeout", "2"] if bounded else ["--step-lock-timeout", "0"]
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "umt-migrations"), "migrate", "--config", str(ini), "--url", url, "--to",
         "head", "--report", os.devnull, "--lock-retries", "100", *lock],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(hold)
    report.rollback()  # the long transaction ends
    report.close()
    code = proc.wait(timeout=600)
    migrated = time.perf_counter() - began
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if code != 0:
        raise SystemExit(f"migrate exited {code}")
    return {
        "queries": float(len(latencies)),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "migrated": migrated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=8.0,
                        help="seconds the long transaction stays open (default 8)")
    parser.add_argument("--readers", type=int, default=4, help="application threads (default 4)")
    args = parser.parse_args()
    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    print(f"hot-table SELECT latency while migrate waits behind a {args.hold:g} s transaction "
          f"({args.readers} reader threads)")
    print(f"{'case':<34} {'queries':>8} {'p50 ms':>8} {'p99 ms':>9} {'max ms':>9} "
          f"{'migrate s':>10}")
    for bounded, label in ((True, "defaults (lock timeout 2 s)"), (False, "no lock timeout")):
        result = scenario(admin, args.hold, args.readers, bounded)
        print(f"{label:<34} {result['queries']:>8.0f} {result['p50'] * 1000:>8.1f} "
              f"{result['p99'] * 1000:>9.0f} {result['max'] * 1000:>9.0f} "
              f"{result['migrated']:>10.1f}")
    print("target with the defaults: p99 <= 2100 ms; without: the hold time, unbounded")
    admin.dispose()


if __name__ == "__main__":
    main()
