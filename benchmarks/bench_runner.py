#!/usr/bin/env python3
"""Runner overhead against plain Alembic, measured side by side in one run on PostgreSQL.

1. base → head over a generated chain of 200 small revisions:
   ``umt-migrations migrate --to head`` vs ``alembic upgrade head`` (target ratio ≤ 1.05),
   on a project whose env.py commits each revision (``transaction_per_migration=True``, as
   UMT's does): both tools then do the same database work, and the ratio is the runner's own
   cost (lock, plan, read-back, report);
   and, for the record, on a project with Alembic's default env.py (one transaction for the
   whole run), where ``migrate`` still commits each revision: that ratio adds the server's cost
   of 200 commits, the price of "a failure leaves the last committed revision";
2. no-op (already at head): ``migrate --to head`` vs ``alembic current`` (target ratio ≤ 1.10).

Each measurement is a whole process, as a Job runs it; the commands alternate, on fresh
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
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    work = Path(tempfile.mkdtemp(prefix="umt-bench-"))
    revs = linear_chain(args.revisions)
    created: list[str] = []
    try:
        for style, title in (("per_revision", "env.py commits each revision"),
                             ("standard", "Alembic's default env.py: one transaction")):
            full = compare_full(admin, work, revs, style, args.rounds, created)
            report(f"base → head, {title}", args.revisions, full,
                   target=1.05 if style == "per_revision" else None)
        noop = compare_noop(work / created[-1], f"{SERVER}/{created[-1]}", args.rounds)
        report("no-op at head", args.revisions, noop, target=1.10)
    finally:
        for name in created:
            drop(admin, name)
        admin.dispose()


def compare_full(admin: sa.Engine, work: Path, revs: list, style: str, rounds: int,
                 created: list[str]) -> dict[str, list[float]]:
    full: dict[str, list[float]] = {"alembic upgrade head": [], "migrate --to head": []}
    for round_ in range(rounds):
        for label in (list(full) if round_ % 2 == 0 else list(reversed(full))):
            name = fresh_database(admin)
            created.append(name)
            url = f"{SERVER}/{name}"
            project = work / name
            ini = make_project(project, revs, url=url, env_style=style)
            if label.startswith("alembic"):
                cmd = [str(BIN / "alembic"), "-c", str(ini), "upgrade", "head"]
            else:
                cmd = [str(BIN / "umt-migrations"), "migrate", "--config", str(ini),
                       "--url", url, "--to", "head", "--report", str(project / "r.json")]
            full[label].append(timed(cmd, project))
    return full


def compare_noop(at_head: Path, url: str, rounds: int) -> dict[str, list[float]]:
    """Both commands on a database already at head (the last one migrated)."""
    pair = {
        "alembic current": [str(BIN / "alembic"), "-c", str(at_head / "alembic.ini"), "current"],
        "migrate --to head (no-op)": [
            str(BIN / "umt-migrations"), "migrate", "--config", str(at_head / "alembic.ini"),
            "--url", url, "--to", "head", "--report", str(at_head / "noop.json")],
    }
    noop: dict[str, list[float]] = {label: [] for label in pair}
    for round_ in range(rounds * 2):
        for label in (list(pair) if round_ % 2 == 0 else list(reversed(pair))):
            noop[label].append(timed(pair[label], at_head))
    return noop


def report(title: str, revisions: int, samples: dict[str, list[float]],
           target: float | None) -> None:
    (base_label, base), (ours_label, ours) = samples.items()
    # Paired: each round ran both commands back to back, so the median of the per-round ratios
    # cancels the machine's slow drifts (checkpoints, other load) better than two medians do.
    ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
    print(f"\n{title} ({revisions} revisions, {len(base)} rounds, PostgreSQL)")
    print(f"  ratio of the medians: {statistics.median(ours) / statistics.median(base):.3f}")
    for label, values in samples.items():
        print(f"  {label:28s} median {statistics.median(values):.3f} s  "
              f"min {min(values):.3f} s  max {max(values):.3f} s")
    if target is None:
        print(f"  ratio {ours_label} / {base_label}: {ratio:.3f} (for the record)")
        return
    verdict = "OK" if ratio <= target else "ABOVE TARGET"
    print(f"  ratio {ours_label} / {base_label}: {ratio:.3f} (target ≤ {target:.2f}) {verdict}")


if __name__ == "__main__":
    main()
