"""What a SchemaMigration says when its migration could not get a table lock (``LockTimeout``).

The runner bounds each revision's lock waits and retries the revision a few times inside its
pod; out of tries it ends with exit 1 and a report naming the revision, its tries and the
session that held the lock (``error.attempts``, ``error.blocker``). The Job then starts another
pod while its ``backoffLimit`` allows. These pure functions turn that into the status messages:
``Reconciling`` (reason ``LockTimeout``) with the pod attempt and the blocker while the Job
retries, and the detail of the ``Stalled`` message once it gave up.
"""

from __future__ import annotations

from umt_operator import reasons
from umt_operator.jobs import JobObservation, RunnerReport


def _lock_timeout(observation: JobObservation) -> RunnerReport | None:
    """The last pod's report when it ended with ``LockTimeout`` and says how (else None)."""
    report = observation.report
    if report is None or report.error_reason != reasons.LOCK_TIMEOUT:
        return None
    if report.error_attempts is None:  # an older runner: its own message says it all
        return None
    return report


def _what_waited(report: RunnerReport) -> str:
    """``revision R could not get its locks in 5 tries, blocked by pid 4242 (…): UPDATE …``."""
    revision = f"revision {report.error_revision}" if report.error_revision else "a revision"
    tries = report.error_attempts or 1
    noun = "try" if tries == 1 else "tries"
    blocker = report.error_blocker or "a session the runner could not identify"
    return f"{revision} could not get its locks in {tries} {noun}, blocked by {blocker}"


def retrying_message(job_name: str, observation: JobObservation) -> str | None:
    """The ``Reconciling`` message while the Job retries a pod that ended with LockTimeout.

    None when the last pod did not end that way, or the Job has its verdict.
    """
    report = _lock_timeout(observation)
    if report is None or observation.finished:
        return None
    ended = max(observation.failed_attempts, 1)
    if observation.latest_pod_ended:
        return (f"Job {job_name}: attempt {ended} ended with LockTimeout: {_what_waited(report)}; "
                "the Job retries it after its back-off while its backoffLimit allows")
    state = "is migrating" if observation.running else "is starting"
    return (f"Job {job_name}: attempt {ended + 1} {state}; attempt {ended} ended with "
            f"LockTimeout: {_what_waited(report)}")


def gave_up_detail(observation: JobObservation) -> str | None:
    """The detail of the ``Stalled`` message once the Job stopped retrying a LockTimeout."""
    report = _lock_timeout(observation)
    if report is None or not observation.failed:
        return None
    pods = max(observation.failed_attempts, 1)
    at = report.to_revision or report.from_revision or "base"
    return (f"{_what_waited(report)} (last of {pods} pod attempt{'s' if pods != 1 else ''}); "
            f"the database stays at {at}, the revisions before it committed. End or wait out "
            "the blocking transaction, then change the spec to run the migration again")
