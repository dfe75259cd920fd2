"""The API server goes away in the middle of a migration and comes back: the operator notices
within its capped back-off (``umt_operator.api_retries``), not kopf's default of up to 21 s.

The real operator (kopf, in-process) against the API emulator, the fake kubelet running the
real runner against a real PostgreSQL database. The emulator's HTTP server stops while the
migration pod runs (every connection cut, the port refusing new ones, as when kube-apiserver's
process dies); the Job finishes meanwhile (the store lives on, as etcd does); the server comes
back on the same port, and the time from its return to the resource's ``Ready`` is measured.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.k8s.emulator import SCHEMA_MIGRATIONS, Emulator
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    NS,
    add_migration,
    add_secret,
    condition,
    jobs_of,
    two_releases,
)
from umt_operator.api_retries import MAX_BACKOFF

pytestmark = pytest.mark.integration


@pytest.fixture
def kubelet_options(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The kubelet runs two "images" (two releases of this repository)."""
    return two_releases(tmp_path_factory)

NAME = "umt-schema"
#: How long the API server stays away: long enough for kopf's default back-offs (1, 1, 2, 3, 5,
#: 8 s...) to be in an 8 s sleep when it returns, as in the 15 s crash seen on a real cluster.
OUTAGE = 13.0
#: What reconciling and writing the status may take once a watch is back, on a loaded machine.
MARGIN = 2.0


def ready(emulator: Emulator) -> dict[str, Any] | None:
    obj = emulator.get(SCHEMA_MIGRATIONS, NS, NAME)
    return obj if condition(obj, "Ready").get("status") == "True" else None


@pytest.mark.usefixtures("operator")
def test_returning_api_server_is_noticed_within_the_capped_backoff(
    emulator: Emulator, kubelet: FakeKubelet, pg_url: str,
) -> None:
    add_secret(emulator, pg_url)
    with kubelet.held(f"{NAME}-*"):
        add_migration(emulator, NAME)
        emulator.wait_for(lambda: (emulator.get(SCHEMA_MIGRATIONS, NS, NAME).get("status")
                                   or {}).get("phase") == "Running", timeout=30)
        emulator.stop_serving()
        went_away = time.monotonic()
    # The migration finishes while the server is away; the operator cannot see it.
    (job,) = jobs_of(emulator, NAME)
    emulator.wait_for_object("batch/v1/jobs", NS, job["metadata"]["name"],
                             lambda j: (j.get("status") or {}).get("succeeded"), timeout=60)
    assert ready(emulator) is None
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - went_away)))  # the outage itself
    emulator.serve_again()
    back = time.monotonic()
    emulator.wait_for(lambda: ready(emulator), timeout=60, message="Ready after the outage")
    noticed = time.monotonic() - back
    print(f"\nAPI server away {back - went_away:.1f} s; Ready {noticed:.2f} s after it returned "
          f"(bound: the {MAX_BACKOFF:g} s back-off cap + {MARGIN:g} s)")
    assert noticed <= MAX_BACKOFF + MARGIN
    assert condition(ready(emulator), "Ready")["observedGeneration"] == 1
    assert ready(emulator)["status"]["currentRevision"] == HEAD
