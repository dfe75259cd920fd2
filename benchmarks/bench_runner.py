#!/usr/bin/env python3
"""Runner overhead against plain Alembic, measured side by side in one run on PostgreSQL.

1. base → head over a generated chain of 200 small revisions:
   ``umt-migrations migrate --to head`` vs ``alembic upgrade head`` (target ratio ≤ 1.05);
2. no-op (already at head): ``migrate --to head`` vs ``alembic current`` (target ratio ≤ 1.10).

Each measurement is a whole process, as a Job runs it; the two commands alternate, on fresh
databases for (1), and the medians are compared. Usage:

    .venv/bin/python benchmarks/bench_runner.py [--revisions 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.alembic_projects import linear_chain, make_project  # noqa: E402

SERVER = os.environ.get("UMT_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def fresh_database(admin: sa.Engine) -> str:
    name = f"umt_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return name


def drop(admin: sa.Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    work = Path(tempfile.mkdtemp(prefix="umt-bench-"))
    revs = linear_chain(args.revisions)
    created: list[str] = []
    try:
        full = {"alembic upgrade head": [], "migrate --to head": []}
        noop = {"alembic current": [], "migrate --to head (no-op)": []}
        for round_ in range(args.rounds):
            for label in (list(full) if round_ % 2 == 0 else list(reversed(full))):
                name = fresh_database(admin)
                created.append(name)
                url = f"{SERVER}/{name}"
                project = work / name
                ini = make_project(project, revs, url=url)
                if label.startswith("alembic"):
                    cmd = [str(BIN / "alembic"), "-c", str(ini), "upgrade", "head"]
                else:
                    cmd = [str(BIN / "umt-migrations"), "migrate", "--config", str(ini),
                           "--url", url, "--to", "head", "--report", str(project / "r.json")]
                full[label].append(timed(cmd, project))
            # the last database is at head: time the no-op pair on it
            at_head = work / created[-1]
            url = f"{SERVER}/{created[-1]}"
            pair = {
                "alembic current": [str(BIN / "alembic"), "-c", str(at_head / "alembic.ini"), "current"],
                "migrate --to head (no-op)": [
                    str(BIN / "umt-migrations"), "migrate", "--config", str(at_head / "alembic.ini"),
                    "--url", url, "--to", "head", "--report", str(at_head / "noop.json")],
            }
            for label in (list(pair) if round_ % 2 == 0 else list(reversed(pair))):
                noop[label].append(timed(pair[label], at_head))
        report("base → head", args.revisions, full, target=1.05)
        report("no-op at head", args.revisions, noop, target=1.10)
    finally:
        for name in created:
            drop(admin, name)
        admin.dispose()


def report(title: str, revisions: int, samples: dict[str, list[float]], target: float) -> None:
    (base_label, base), (ours_label, ours) = samples.items()
    base_median, ours_median = statistics.median(base), statistics.median(ours)
    ratio = ours_median / base_median
    print(f"\n{title} ({revisions} revisions, {len(base)} rounds, PostgreSQL)")
    for label, values in samples.items():
        print(f"  {label:28s} median {statistics.median(values):.3f} s  "
              f"min {min(values):.3f} s  max {max(values):.3f} s")
    verdict = "OK" if ratio <= target else "ABOVE TARGET"
    print(f"  ratio {ours_label} / {base_label}: {ratio:.3f} (target ≤ {target:.2f}) {verdict}")


if __name__ == "__main__":
    main()
