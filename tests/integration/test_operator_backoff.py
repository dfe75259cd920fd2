"""A runner that dies without a report, every time: the Job gives up (``BackoffLimitExceeded``)
and the resource says so with the runner's last words, as the README promises.

The revision module writes a line to stderr and ends the process at once (``os._exit``: no
report, no termination message of its own), as a crash in a project's code would. The Job's
``terminationMessagePolicy: FallbackToLogsOnError`` makes the kubelet keep the log's tail, and
the operator reads it from the pod's status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.alembic_projects import Rev, linear_chain, make_project
from tests.conftest import REPO_ROOT
from tests.k8s.emulator import JOBS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    NS,
    add_migration,
    add_secret,
    condition,
    event_reasons,
    jobs_of,
    wait_condition,
)

pytestmark = pytest.mark.integration

IMAGE = "registry.example/umt:2.0.0"
LAST_WORDS = "the schema key could not be unsealed (vault answered 503)"


@pytest.fixture
def kubelet_options(tmp_path: Path) -> dict[str, Any]:
    revs = linear_chain(1)
    revs.append(Rev("d00000000001", revs[-1].id, "dies on import", module_python=[
        "import os as _os, sys as _sys",
        f"_sys.stderr.write('fatal: {LAST_WORDS}\\n')",
        "_sys.stderr.flush()",
        "_os._exit(1)",
    ]))
    project = make_project(tmp_path / "crashing", revs).parent
    return {"command_map": {"umt-migrations": [sys.executable, "-m", "umt_migrations"]},
            "cwd": str(REPO_ROOT), "image_path_map": {IMAGE: {"/app": project}}}


@pytest.mark.usefixtures("operator")
def test_backoff_limit_exceeded_is_reported_with_the_runners_last_words(
        emulator: Emulator, kubelet: FakeKubelet, pg_url: str) -> None:
    add_secret(emulator, pg_url)
    add_migration(emulator, image=IMAGE)
    obj = wait_condition(emulator, "umt-schema", "Stalled", "BackoffLimitExceeded")
    (job,) = jobs_of(emulator, "umt-schema")
    name = job["metadata"]["name"]
    finished = emulator.get(JOBS, NS, name)
    assert finished["status"]["failed"] == 2  # backoffLimit 1: two pods, both died
    assert kubelet.processes_started == 2
    status = obj["status"]
    assert status["phase"] == "Failed"
    assert condition(obj, "Ready")["status"] == "False"
    assert status["message"].startswith(
        f"BackoffLimitExceeded: Job {name} failed (exit code 1); log: ")
    assert status["message"].endswith(f"fatal: {LAST_WORDS}")
    assert condition(obj, "Stalled")["message"] == status["message"]
    emulator.wait_for(lambda: "BackoffLimitExceeded" in event_reasons(emulator, "umt-schema"),
                      timeout=10, message="the Warning Event")  # posted after the status
    engine = sa.create_engine(pg_url)
    try:  # it died before touching the database
        assert not sa.inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()
