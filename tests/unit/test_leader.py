"""Leader election decisions (client-go's rules), with a fake clock: no API, no waiting."""

from __future__ import annotations

import datetime

import pytest

from umt_operator.leader import Candidate, LeaseRecord, Timing, candidate_identity, micro_time

pytestmark = pytest.mark.unit

T0 = "2025-01-01T00:00:00.000000Z"
T1 = "2025-01-01T00:00:01.000000Z"


def held_by(holder: str, *, duration: int = 15, transitions: int = 0,
            renewed: str = T0) -> LeaseRecord:
    return LeaseRecord(holder, duration, T0, renewed, transitions)


def test_timing_scales_client_go_defaults() -> None:
    assert Timing.scaled(15) == Timing(15, 10, 2)
    timing = Timing.scaled(6)
    assert (timing.lease_duration, timing.renew_deadline) == (6, 4)
    assert timing.retry_period == pytest.approx(0.8)
    # client-go refuses a renew deadline that is not above 1.2 retry periods
    assert timing.renew_deadline > 1.2 * timing.retry_period
    assert timing.lease_duration > timing.renew_deadline


def test_an_absent_lease_is_created_by_whoever_asks_first() -> None:
    record = Candidate("b", 15).initial(T0)
    assert record == LeaseRecord("b", 15, T0, T0, 0)
    assert record.to_spec() == {"holderIdentity": "b", "leaseDurationSeconds": 15,
                                "acquireTime": T0, "renewTime": T0, "leaseTransitions": 0}


def test_a_held_lease_is_not_taken_before_it_expires_on_our_clock() -> None:
    standby = Candidate("b", 15)
    assert standby.claim(held_by("a"), now=100.0, stamp=T1) is None
    assert standby.claim(held_by("a"), now=114.9, stamp=T1) is None  # unchanged for 14.9 s
    taken = standby.claim(held_by("a", transitions=3), now=100.0 + 15, stamp=T1)
    # a changed record restarts the clock: the transitions count changed, so not yet expired
    assert taken is None
    taken = standby.claim(held_by("a", transitions=3), now=130.0, stamp=T1)
    assert taken == LeaseRecord("b", 15, T1, T1, 4)  # acquire time is ours, one more transition


def test_expiry_is_measured_from_when_we_saw_the_change_not_from_renew_time() -> None:
    """Clock skew: a renewTime far in the past (another node's clock) does not make the lease
    look expired; only 'no change for leaseDurationSeconds on our clock' does."""
    standby = Candidate("b", 15)
    ancient = held_by("a", renewed="1999-01-01T00:00:00.000000Z")
    assert standby.claim(ancient, now=500.0, stamp=T1) is None
    assert standby.claim(ancient, now=514.0, stamp=T1) is None
    assert standby.claim(ancient, now=515.0, stamp=T1) is not None


def test_every_renewal_restarts_the_standbys_clock() -> None:
    standby = Candidate("b", 15)
    for second in range(0, 60, 2):  # the leader renews every 2 s
        renewed = f"2025-01-01T00:00:{second:02d}.000000Z"
        assert standby.claim(held_by("a", renewed=renewed), now=float(second), stamp=T1) is None
    assert standby.claim(held_by("a", renewed=renewed), now=58.0 + 14, stamp=T1) is None
    assert standby.claim(held_by("a", renewed=renewed), now=58.0 + 15, stamp=T1) is not None


def test_the_holders_own_duration_counts() -> None:
    standby = Candidate("b", 15)
    short = held_by("a", duration=4)
    assert standby.claim(short, now=0.0, stamp=T1) is None
    assert standby.claim(short, now=4.0, stamp=T1) == LeaseRecord("b", 15, T1, T1, 1)


def test_a_released_lease_is_taken_at_once() -> None:
    """The leader's release empties the holder (client-go's ReleaseOnCancel)."""
    standby = Candidate("b", 15)
    assert standby.claim(held_by("a"), now=10.0, stamp=T0) is None
    released = LeaseRecord("", 1, T1, T1, 2)
    assert standby.claim(released, now=10.5, stamp=T1) == LeaseRecord("b", 15, T1, T1, 3)


def test_the_leader_renews_keeping_acquire_time_and_transitions() -> None:
    leader = Candidate("a", 15)
    mine = LeaseRecord("a", 15, T0, T0, 7)
    leader.accepted(mine, now=0.0)
    assert leader.is_leader and leader.lease_valid(14.9) and not leader.lease_valid(15.0)
    assert leader.renewal(T1) == LeaseRecord("a", 15, T0, T1, 7)
    # the slow path (after a read) renews the same way, even past expiry on our clock
    assert leader.claim(mine, now=20.0, stamp=T1) == LeaseRecord("a", 15, T0, T1, 7)


def test_a_leader_that_reads_another_holder_is_no_longer_leader() -> None:
    leader = Candidate("a", 15)
    leader.accepted(LeaseRecord("a", 15, T0, T0, 1), now=0.0)
    assert leader.claim(held_by("b", transitions=2), now=1.0, stamp=T1) is None
    assert not leader.is_leader
    assert leader.renewal(T1) is None and leader.release(T1) is None


def test_release_gives_the_lease_up_for_a_second() -> None:
    leader = Candidate("a", 15)
    assert leader.release(T1) is None  # never held: nothing to release
    leader.accepted(LeaseRecord("a", 15, T0, T0, 4), now=0.0)
    assert leader.release(T1) == LeaseRecord("", 1, T1, T1, 4)


def test_record_round_trips_through_a_lease_body() -> None:
    record = LeaseRecord("op-1", 15, T0, T1, 2)
    assert LeaseRecord.from_lease({"spec": record.to_spec()}) == record
    assert LeaseRecord.from_lease({"spec": {}}) == LeaseRecord()
    assert LeaseRecord.from_lease({}) == LeaseRecord()


def test_micro_time_is_utc_with_microseconds() -> None:
    moment = datetime.datetime(2025, 3, 4, 5, 6, 7, 89, tzinfo=datetime.UTC)
    assert micro_time(moment) == "2025-03-04T05:06:07.000089Z"
    assert micro_time().endswith("Z") and len(micro_time()) == len(T0)


def test_identity_is_the_pod_name_else_host_plus_random_suffix() -> None:
    assert candidate_identity({"POD_NAME": "umt-operator-7d9f-abcde"}) == "umt-operator-7d9f-abcde"
    first, second = candidate_identity({}), candidate_identity({"POD_NAME": " "})
    assert first != second and first.rsplit("_", 1)[0] == second.rsplit("_", 1)[0]
