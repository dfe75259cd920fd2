"""High availability: operator replicas elect one leader through a Lease.

Two ``python -m umt_operator`` processes run against one API emulator, each with its own
identity (``POD_NAME``) and its own bearer token, so the emulator's request log says who sent
what, as a real apiserver's audit log would. Jobs run as real ``umt-migrations migrate``
processes (the fake kubelet) against a real PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.k8s.emulator import LEASES, SCHEMA_MIGRATIONS, Emulator
from tests.k8s.fixtures import register_repo_crds
from tests.k8s.kubelet import FakeKubelet
from tests.operator_harness import (
    HEAD,
    add_migration,
    add_secret,
    db_revision,
    free_port,
    jobs_of,
    wait_condition,
)
from umt_operator.kube import KubeAPI, KubeError
from umt_operator.leader import JITTER_FACTOR, LeaderElection, LeaseRecord, Timing

pytestmark = pytest.mark.integration

NS = "default"
LEASE = "umt-schema-operator"
LEASE_SECONDS = 4
TIMING = Timing.scaled(LEASE_SECONDS)  # renew deadline 2.7 s, retry period 0.53 s
TIMEOUT = 60
#: How late one wake-up may come (a timer firing, a request answered and read) on this loaded
#: 2-core machine. A bound below allows it once per wake-up on the path it measures.
WAKE_UP_LAG = 0.2


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The emulated cluster, keeping every request (who sent what) and the Lease's history."""
    with Emulator(request_log_size=100_000) as cluster:
        register_repo_crds(cluster)
        cluster.store.object_history_size = 10_000
        yield cluster


@dataclasses.dataclass
class Replica:
    """One operator process, as one pod of the Deployment."""

    name: str
    process: subprocess.Popen[bytes]
    health_port: int
    log: Path

    def logged(self, text: str) -> bool:
        return text in self.log.read_text()

    def healthz(self) -> dict[str, Any]:
        """The liveness endpoint's answer (it must be 200 OK)."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as reply:
            assert reply.status == 200
            return dict(json.loads(reply.read()))

    def stop(self, sig: signal.Signals) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=30)


def start_replica(emulator: Emulator, name: str, tmp_path: Path) -> Replica:
    kubeconfig = emulator.kubeconfig()
    kubeconfig["users"][0]["user"] = {"token": name}  # who is who in the request log
    config_path = tmp_path / f"kubeconfig-{name}"
    config_path.write_text(yaml.safe_dump(kubeconfig))
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(config_path), "POD_NAME": name,
           "UMT_OPERATOR_NAMESPACES": NS, "UMT_OPERATOR_HEALTH_PORT": str(port),
           "UMT_OPERATOR_METRICS_PORT": "0",
           "UMT_OPERATOR_ALEMBIC_CONFIG": str(REPO_ROOT / "alembic.ini"),
           "UMT_OPERATOR_LEADER_ELECTION": "true", "UMT_OPERATOR_LEASE_NAMESPACE": NS,
           "UMT_OPERATOR_LEASE_DURATION_SECONDS": str(LEASE_SECONDS)}
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "umt_operator"], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, process, port, log)


@pytest.fixture
def replicas(emulator: Emulator, tmp_path: Path) -> Iterator[dict[str, Replica]]:
    started: dict[str, Replica] = {}
    yield started
    for replica in started.values():
        if replica.process.poll() is None:
            replica.process.kill()
            replica.process.wait(timeout=30)
    for replica in started.values():
        print(f"--- {replica.name} (exit {replica.process.returncode}) ---\n"
              f"{replica.log.read_text()[-4000:]}")


def holder(emulator: Emulator) -> str | None:
    lease = emulator.get(LEASES, NS, LEASE)
    return None if lease is None else LeaseRecord.from_lease(lease).holder


def wait_leader(emulator: Emulator, name: str, timeout: float = TIMEOUT) -> float:
    emulator.wait_for(lambda: holder(emulator) == name, timeout, f"{name} holds the Lease")
    return time.monotonic()


def wait_standby(emulator: Emulator, replica: Replica, leader: str) -> None:
    """The standby has read the Lease and says whom it waits for (re-checked at every write
    to the cluster: the leader renews every retry period)."""
    emulator.wait_for(lambda: replica.logged(
        f"waiting to become leader (lease {NS}/{LEASE} held by {leader})"), TIMEOUT,
        f"{replica.name} waits for {leader}")


def requests_by(emulator: Emulator, token: str) -> list[Any]:
    return [r for r in list(emulator.server)
            if r.headers.get("Authorization") == f"Bearer {token}"]


def is_lease_request(request: Any) -> bool:
    return request.resource is not None and request.resource.plural == "leases"


def micro_seconds(micro_time: str) -> float:
    """A Kubernetes MicroTime (RFC 3339, UTC) as seconds since the epoch."""
    return datetime.datetime.fromisoformat(micro_time).timestamp()


def lease_versions(emulator: Emulator) -> list[LeaseRecord]:
    return [LeaseRecord.from_lease(version) for version in emulator.history(LEASES, NS, LEASE)]


def assert_acted_only_once_leader(emulator: Emulator, name: str) -> None:
    """Every request ``name`` sent before it held the Lease was about the Lease: no watch, no
    Job, no status, no Event. The last of them is the write that made it the holder (its
    record is in the Lease's history)."""
    sent = requests_by(emulator, name)
    acting = next(i for i, r in enumerate(sent) if not is_lease_request(r))
    assert acting > 0 and all(is_lease_request(r) for r in sent[:acting])
    winning = sent[acting - 1]
    assert str(winning.method).upper().endswith("PUT"), winning
    record = LeaseRecord.from_lease(winning.data)
    assert record.holder == name and record in lease_versions(emulator)
    assert any(r.url.path.endswith("/status") for r in sent[acting:])  # it did act later


def test_the_standby_finishes_the_migration_when_the_leader_is_killed(
        emulator: Emulator, kubelet: FakeKubelet, replicas: dict[str, Replica], pg_url: str,
        tmp_path: Path) -> None:
    add_secret(emulator, pg_url)
    replicas["a"] = start_replica(emulator, "operator-a", tmp_path)
    wait_leader(emulator, "operator-a")
    emulator.wait_for(lambda: emulator.watchers(SCHEMA_MIGRATIONS) >= 1)
    replicas["b"] = start_replica(emulator, "operator-b", tmp_path)
    wait_standby(emulator, replicas["b"], "operator-a")
    # a standby answers liveness probes (it is not restarted); the leader's is kopf's own
    assert replicas["b"].healthz() == {"leaderElection": "standby"}
    assert replicas["a"].healthz() == {"api": True}

    with kubelet.held("umt-schema-*"):
        add_migration(emulator)
        emulator.wait_for(lambda: jobs_of(emulator, "umt-schema"), TIMEOUT)
        wait_condition(emulator, "umt-schema", "Reconciling")
        assert emulator.watchers(SCHEMA_MIGRATIONS) == 1  # the standby watches nothing
        killed, killed_wall = time.monotonic(), time.time()
        replicas["a"].process.kill()  # SIGKILL: no release, the Lease must expire
        led = wait_leader(emulator, "operator-b")
    obj = wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    ready = time.monotonic()

    # Measured on the Lease's own timestamps, each written by the replica that wrote the
    # record: from A's last renewTime to B's acquireTime.
    versions = lease_versions(emulator)
    last_renewal = [v for v in versions if v.holder == "operator-a"][-1].renew_time
    acquired = next(v for v in versions if v.holder == "operator-b").acquire_time
    assert micro_seconds(last_renewal) <= killed_wall  # a killed leader renews nothing
    takeover = micro_seconds(acquired) - micro_seconds(last_renewal)
    print(f"\ntakeover after SIGKILL: {takeover:.2f} s from A's last renewal to B's "
          f"acquisition (lease {LEASE_SECONDS} s, retry {TIMING.retry_period:.2f} s); B led "
          f"{led - killed:.2f} s and Ready {ready - killed:.2f} s after the kill")
    # B counts the lease duration on its own clock from when it saw A's last renewal, which
    # is after A wrote it: never sooner than one lease duration after that renewal.
    assert TIMING.lease_duration <= takeover
    # B saw that renewal at its next jittered try (at most 2.2 retry periods later) and took
    # the Lease at its first try after the expiry (2.2 retry periods at most): five wake-ups
    # on the way (A's write answered, B's two sleeps, B's read and its write).
    jittered = (1 + JITTER_FACTOR) * TIMING.retry_period
    assert takeover <= TIMING.lease_duration + 2 * jittered + 5 * WAKE_UP_LAG
    assert replicas["b"].logged("became leader")
    assert replicas["b"].healthz() == {"api": True}  # kopf's took the standby's port over

    assert obj["status"]["currentRevision"] == HEAD == db_revision(pg_url)
    assert obj["status"]["observedGeneration"] == 1
    assert len(jobs_of(emulator, "umt-schema")) == 1 and kubelet.processes_started == 1
    assert_acted_only_once_leader(emulator, "operator-b")
    assert requests_by(emulator, "operator-a")  # A did act while it led
    assert [v.holder for v in lease_versions(emulator)][-1] == "operator-b"
    assert emulator.get(LEASES, NS, LEASE)["spec"]["leaseTransitions"] == 1


def test_a_drained_leader_releases_the_lease_and_the_standby_leads_at_once(
        emulator: Emulator, kubelet: FakeKubelet, replicas: dict[str, Replica], pg_url: str,
        tmp_path: Path) -> None:
    replicas["a"] = start_replica(emulator, "operator-a", tmp_path)
    wait_leader(emulator, "operator-a")
    replicas["b"] = start_replica(emulator, "operator-b", tmp_path)
    wait_standby(emulator, replicas["b"], "operator-a")

    drained = time.monotonic()
    replicas["a"].process.send_signal(signal.SIGTERM)
    led = wait_leader(emulator, "operator-b")
    takeover = led - drained
    print(f"\ntakeover after SIGTERM: {takeover:.2f} s (lease {LEASE_SECONDS} s, retry "
          f"{TIMING.retry_period:.2f} s)")
    assert replicas["a"].process.wait(timeout=30) == 0
    assert replicas["a"].logged("released the lease")
    released = [v for v in lease_versions(emulator) if not v.holder]
    assert released and released[-1].duration_seconds == 1
    # faster than any expiry: the standby took the released Lease at its next try
    assert takeover < TIMING.lease_duration - TIMING.retry_period

    add_secret(emulator, pg_url)
    add_migration(emulator)
    wait_condition(emulator, "umt-schema", "Ready", "Succeeded")
    assert_acted_only_once_leader(emulator, "operator-b")

    # a drained standby just leaves: it holds nothing to release
    replicas["c"] = start_replica(emulator, "operator-c", tmp_path)
    wait_standby(emulator, replicas["c"], "operator-b")
    assert replicas["c"].stop(signal.SIGTERM) == 0
    assert holder(emulator) == "operator-b"
    assert all(is_lease_request(r) for r in requests_by(emulator, "operator-c"))


def test_leader_election_does_not_hide_missing_credentials(tmp_path: Path) -> None:
    """No service account, no kubeconfig: the operator stops at login with its message and
    waits for no Lease."""
    env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    env.update(HOME=str(tmp_path), UMT_OPERATOR_LEADER_ELECTION="true",
               UMT_OPERATOR_LEASE_NAMESPACE=NS, UMT_OPERATOR_METRICS_PORT="0",
               UMT_OPERATOR_HEALTH_PORT=str(free_port()))
    proc = subprocess.run([sys.executable, "-m", "umt_operator"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "no Kubernetes credentials" in proc.stderr and "Traceback" not in proc.stderr


# --- The election against the emulator, in-process --------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _api(emulator: Emulator) -> KubeAPI:
    return KubeAPI(kopf.ConnectionInfo(server=emulator.url))


def test_of_many_candidates_racing_for_a_free_lease_exactly_one_wins(emulator: Emulator) -> None:
    async def race() -> list[bool]:
        api = await _api(emulator)
        try:
            elections = [LeaderElection(api, NS, LEASE, f"candidate-{i}", TIMING)
                         for i in range(6)]
            first = await asyncio.gather(*(e.try_acquire_or_renew() for e in elections))
            # the Lease released by its holder: free for all again
            winner = elections[first.index(True)]
            await winner.release()
            second = await asyncio.gather(*(e.try_acquire_or_renew() for e in elections))
            return [*first, *second]
        finally:
            await api.close()

    outcomes = run(race())
    assert outcomes[:6].count(True) == 1 and outcomes[6:].count(True) == 1
    assert emulator.get(LEASES, NS, LEASE)["spec"]["leaseTransitions"] == 1


def test_a_stale_or_missing_resource_version_is_refused(emulator: Emulator) -> None:
    async def writes() -> tuple[int, int]:
        api = await _api(emulator)
        try:
            lease = await api.create_lease(NS, {"metadata": {"name": LEASE},
                                                "spec": {"holderIdentity": "a"}})
            await api.replace_lease(NS, LEASE, {**lease, "spec": {"holderIdentity": "b"}})
            codes = []
            for body in ({**lease, "spec": {"holderIdentity": "c"}},  # stale version
                         {"metadata": {"name": LEASE}, "spec": {"holderIdentity": "c"}}):
                try:
                    await api.replace_lease(NS, LEASE, body)
                except KubeError as exc:
                    codes.append(exc.status)
            return codes[0], codes[1]
        finally:
            await api.close()

    assert run(writes()) == (409, 422)
    assert holder(emulator) == "b"


class RecordingKubeAPI(KubeAPI):
    """The real client, noting when each Lease call starts (monotonic clock)."""

    calls: list[tuple[str, float]]

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", time.monotonic()))
        return await super().get_lease(namespace, name)

    async def replace_lease(self, namespace: str, name: str,
                            lease: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("replace", time.monotonic()))
        return await super().replace_lease(namespace, name, lease)


def test_a_leader_that_cannot_renew_stops_after_the_renew_deadline(emulator: Emulator) -> None:
    timing = Timing(2, 1.0, 0.2)

    async def scenario() -> tuple[float, float, list[tuple[str, float]]]:
        api = RecordingKubeAPI(kopf.ConnectionInfo(server=emulator.url))
        api.calls = []
        lost = asyncio.Event()
        try:
            election = LeaderElection(api, NS, LEASE, "leader", timing, on_lost=lost.set)
            await election.acquire()
            election.start_renewing()
            # someone else writes the Lease (e.g. after a network partition)
            await asyncio.to_thread(emulator.patch, LEASES, NS, LEASE,
                                    {"spec": {"holderIdentity": "intruder"}})
            taken = time.monotonic()
            await asyncio.wait_for(lost.wait(), timeout=10)
            lost_at = time.monotonic()
            await election.release()  # not the holder any more: must not write
            return taken, lost_at, api.calls
        finally:
            await api.close()

    taken, lost_at, calls = run(scenario())
    assert holder(emulator) == "intruder"
    # A renewal round that succeeds is one write (the fast path). The round that fails begins
    # with the write refused after the intrusion, then reads and retries until its deadline
    # (asyncio.timeout around the round): it is the write just before the first read.
    # (calls[0] is the read of the acquisition, which created the Lease)
    first_read = next(i for i, (kind, _) in enumerate(calls) if kind == "get" and i > 0)
    assert calls[first_read - 1][0] == "replace"
    round_began = calls[first_read - 1][1]
    print(f"\nround began {round_began - taken:+.2f} s after the intrusion, lost "
          f"{lost_at - round_began:.2f} s later (deadline {timing.renew_deadline} s)")
    # It began at the first renewal after the intrusion (one retry period, one wake-up), or
    # with a write already on its way when the intruder wrote.
    assert -WAKE_UP_LAG <= round_began - taken <= timing.retry_period + WAKE_UP_LAG
    # The leader stops at the renew deadline of that round: one timer, one wake-up (asyncio
    # may run a timer up to one clock resolution early).
    early = time.get_clock_info("monotonic").resolution
    assert timing.renew_deadline - early <= lost_at - round_began
    assert lost_at - round_began <= timing.renew_deadline + WAKE_UP_LAG
