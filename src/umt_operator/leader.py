"""Leader election through a ``coordination.k8s.io/v1`` Lease: one replica acts, the others wait.

The rules are those of client-go's leader election (``k8s.io/client-go/tools/leaderelection``,
``leaderelection.go`` and ``resourcelock/leaselock.go``), which Kubernetes' own controllers use:

- The Lease's spec is the record: ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
  ``renewTime``, ``leaseTransitions``.
- A candidate may take the Lease when it is absent, has no holder (released), or has not
  changed for ``leaseDurationSeconds`` **as measured on the candidate's own clock from the moment
  it saw the last change** (the timestamps in the record are informative only: clocks may
  disagree between nodes).
- Every write is a PUT carrying the ``resourceVersion`` last read: of two candidates racing for
  the same record, the apiserver accepts one and answers 409 Conflict to the other.
- The leader renews every ``retry`` period; if it cannot renew within ``renew_deadline`` it stops
  acting at once (the process exits, as client-go's users do). A standby only takes over after a
  full lease duration without change, which is longer than the renew deadline.
- On a graceful shutdown the leader releases the Lease (holder emptied, duration 1 s, like
  client-go's ``ReleaseOnCancel``), so a standby takes over at its next try, within seconds.

:class:`Candidate` holds the decisions and is pure (clock values are passed in);
:class:`LeaderElection` does the API calls through :class:`~umt_operator.kube.KubeAPI`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NoReturn

import aiohttp.web
import kopf

from umt_operator.kube import KubeAPI, KubeError
from umt_operator.settings import HEALTH_PATH, Settings

logger = logging.getLogger(__name__)

#: client-go's jitter on the acquire loop: each wait is ``retry * (1 + random() * 1.2)``.
JITTER_FACTOR = 1.2


@dataclasses.dataclass(frozen=True)
class Timing:
    """Lease duration, renew deadline and retry period, in seconds."""

    lease_duration: float
    renew_deadline: float
    retry_period: float

    @classmethod
    def scaled(cls, lease_duration_seconds: int) -> Timing:
        """client-go's defaults (15 s / 10 s / 2 s) scaled to another lease duration."""
        return cls(lease_duration_seconds, lease_duration_seconds * 2 / 3,
                   lease_duration_seconds * 2 / 15)


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec, the way client-go's ``LeaderElectionRecord`` reads it."""

    holder: str = ""
    duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        spec = lease.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime") or "",
            renew_time=spec.get("renewTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


@dataclasses.dataclass
class Candidate:
    """One replica's view of the election; every decision of client-go's ``tryAcquireOrRenew``.

    ``now`` arguments are a monotonic clock (seconds); ``stamp`` arguments are the wall-clock
    time written into the record (a Kubernetes MicroTime string).
    """

    identity: str
    duration_seconds: int
    observed: LeaseRecord | None = None
    observed_at: float = float("-inf")

    @property
    def is_leader(self) -> bool:
        return self.observed is not None and self.observed.holder == self.identity

    def lease_valid(self, now: float) -> bool:
        """The observed record changed less than its duration ago (on our clock)."""
        if self.observed is None:
            return False
        return self.observed_at + self.observed.duration_seconds > now

    def observe(self, record: LeaseRecord, now: float) -> None:
        """A record read from the API: the expiry clock restarts only when it changed."""
        if record != self.observed:
            self.observed, self.observed_at = record, now

    def accepted(self, record: LeaseRecord, now: float) -> None:
        """Our write of ``record`` succeeded."""
        self.observed, self.observed_at = record, now

    def initial(self, stamp: str) -> LeaseRecord:
        """The record to create when no Lease exists."""
        return LeaseRecord(self.identity, self.duration_seconds, stamp, stamp, 0)

    def renewal(self, stamp: str) -> LeaseRecord | None:
        """The leader's optimistic renewal (no read first), or None when it must read."""
        if not (self.is_leader and self.observed is not None):
            return None
        return dataclasses.replace(self.observed, duration_seconds=self.duration_seconds,
                                   renew_time=stamp)

    def claim(self, current: LeaseRecord, now: float, stamp: str) -> LeaseRecord | None:
        """After reading ``current``: the record to write (take over or renew), or None while
        another holder's lease is still valid."""
        self.observe(current, now)
        if current.holder and self.lease_valid(now) and not self.is_leader:
            return None
        if self.is_leader:
            return dataclasses.replace(current, duration_seconds=self.duration_seconds,
                                       renew_time=stamp)
        return LeaseRecord(self.identity, self.duration_seconds, stamp, stamp,
                           current.transitions + 1)

    def release(self, stamp: str) -> LeaseRecord | None:
        """The record that gives the Lease up (None when we don't hold it)."""
        if not (self.is_leader and self.observed is not None):
            return None
        return LeaseRecord("", 1, stamp, stamp, self.observed.transitions)


def micro_time(moment: datetime.datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339, UTC, microseconds."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def candidate_identity(environ: Mapping[str, str] | None = None) -> str:
    """``POD_NAME`` (the Deployment passes it from the downward API), else the host name with
    a random suffix, so two processes on one host never share an identity."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME", "").strip() or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _exit_now() -> NoReturn:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)


class LeaderElection:
    """Acquire, renew and release one Lease through the operator's API client."""

    def __init__(self, api: KubeAPI, namespace: str, name: str, identity: str, timing: Timing,
                 *, clock: Callable[[], float] = time.monotonic,
                 on_lost: Callable[[], None] = _exit_now) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.timing = timing
        self.candidate = Candidate(identity, max(1, round(timing.lease_duration)))
        self._clock = clock
        self._on_lost = on_lost
        self._lease: dict[str, Any] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._stop_renewing = asyncio.Event()
        self._reported_holder: str | None = None

    @property
    def description(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the Lease afterwards."""
        fast = self.candidate.renewal(micro_time())
        if (fast is not None and self.candidate.lease_valid(self._clock())
                and await self._write(fast)):
            return True
        try:
            lease = await self.api.get_lease(self.namespace, self.name)
            if lease is None:
                initial = self.candidate.initial(micro_time())
                self._lease = await self.api.create_lease(self.namespace, self._body(initial))
                self.candidate.accepted(initial, self._clock())
                return True
        except (KubeError, kopf.TemporaryError) as exc:
            logger.warning("leader election: lease %s: %s", self.description, exc)
            return False
        self._lease = lease
        record = self.candidate.claim(LeaseRecord.from_lease(lease), self._clock(), micro_time())
        return record is not None and await self._write(record)

    async def acquire(self) -> None:
        """Try until we lead (jittered retries, as client-go); log who holds it meanwhile."""
        logger.info("leader election: %s competing for lease %s",
                    self.candidate.identity, self.description)
        while not await self.try_acquire_or_renew():
            self._report_holder()
            period = self.timing.retry_period
            await asyncio.sleep(period + random.random() * JITTER_FACTOR * period)
        logger.info("became leader (lease %s, identity %s)", self.description,
                    self.candidate.identity)

    def start_renewing(self) -> None:
        self._renewing = asyncio.create_task(self._renew_forever(), name="lease renewal")

    async def release(self) -> None:
        """Stop renewing and give the Lease up, so a standby takes over at once.

        The renewal loop is stopped between two attempts, never cancelled in the middle of a
        write: a renewal the server accepted but we never heard of would leave us a stale
        resourceVersion, and the release would then fail with a conflict.
        """
        if self._renewing is not None:
            self._stop_renewing.set()
            await self._renewing
            self._renewing = None
        record = self.candidate.release(micro_time())
        if record is not None and await self._write(record):
            logger.info("released the lease %s", self.description)

    async def _renew_forever(self) -> None:
        """Renew every retry period; give up (and stop acting) after the renew deadline."""
        while not await self._stopping(self.timing.retry_period):
            try:
                async with asyncio.timeout(self.timing.renew_deadline):
                    while not await self.try_acquire_or_renew():
                        if await self._stopping(self.timing.retry_period):
                            return
            except TimeoutError:
                logger.warning("lost the lease; stopping (lease %s not renewed within %.1f s)",
                               self.description, self.timing.renew_deadline)
                self._on_lost()
                return

    async def _stopping(self, delay: float) -> bool:
        """Wait ``delay`` seconds; True at once when :meth:`release` asks the loop to end."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_renewing.wait(), delay)
        return self._stop_renewing.is_set()

    async def _write(self, record: LeaseRecord) -> bool:
        """PUT the record with the resourceVersion last read; False on a conflict or error."""
        if self._lease is None:
            return False
        try:
            self._lease = await self.api.replace_lease(self.namespace, self.name,
                                                       self._body(record, self._lease))
        except (KubeError, kopf.TemporaryError) as exc:
            logger.debug("leader election: update of lease %s failed: %s", self.description, exc)
            return False
        self.candidate.accepted(record, self._clock())
        return True

    def _body(self, record: LeaseRecord, lease: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if lease is not None:
            return {**lease, "spec": record.to_spec()}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": record.to_spec()}

    def _report_holder(self) -> None:
        holder = self.candidate.observed.holder if self.candidate.observed else ""
        if holder != self._reported_holder:
            self._reported_holder = holder
            logger.info("waiting to become leader (lease %s held by %s)", self.description,
                        holder or "nobody")


@contextlib.asynccontextmanager
async def standby_liveness(port: int) -> AsyncIterator[None]:
    """Answer liveness probes on ``port`` while waiting for the Lease.

    kopf serves its liveness endpoint only once the startup handlers have finished
    (``kopf/_core/reactor/running.py``: the health reporter waits for ``started_flag``), and a
    standby waits in one; without this, the kubelet would restart every standby. The server is
    closed before the startup handler returns, and kopf binds the same port right after.
    """
    async def alive(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"leaderElection": "standby"})

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get(HEALTH_PATH, alive)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "0.0.0.0", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def lead(api: KubeAPI, settings: Settings) -> LeaderElection:
    """Block until this replica holds the Lease, then keep renewing it in the background."""
    election = LeaderElection(api, settings.lease_namespace, settings.lease_name,
                              candidate_identity(), Timing.scaled(settings.lease_duration_seconds))
    async with standby_liveness(settings.health_port):
        await election.acquire()
    election.start_renewing()
    return election
