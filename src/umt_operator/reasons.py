"""Condition reasons: the words shared by ``kubectl get``, status conditions, events and logs.

The runner's report uses the same names in ``error.reason`` (``umt_migrations.errors``; a unit
test keeps both lists in step without the operator importing the engine).
"""

from __future__ import annotations

from typing import Final

# Progress.
JOB_CREATED: Final = "JobCreated"
#: An earlier generation's Job, stuck before its runner ever started, was deleted.
JOB_REPLACED: Final = "JobReplaced"
MIGRATING: Final = "Migrating"
SUCCEEDED: Final = "Succeeded"
#: Ready without a Job: nothing the result depends on changed since this resource's last
#: successful run (``umt_operator.rerun``).
INPUTS_UNCHANGED: Final = "InputsUnchanged"

# Review (spec.review): the plan Job, lint, approval, drift (see umt_operator.review).
#: The plan Job of this generation is computing the plan (Reconciling).
PLANNING: Final = "Planning"
#: The plan needs ``spec.review.approvedPlanDigest`` (Ready False; neither Reconciling nor
#: Stalled: kstatus readers see it as not progressing, Argo CD as Suspended).
APPROVAL_PENDING: Final = "ApprovalPending"
#: ``review.lint: Block`` and the plan has unaccepted errors: no migration Job (Stalled).
LINT_FAILED: Final = "LintFailed"
#: The ``Drifted`` condition: the schema differs from the models (with ``onDrift: Fail``
#: also Ready False and Stalled), matches them, or could not be compared.
DRIFTED: Final = "Drifted"
NO_DRIFT: Final = "NoDrift"
DRIFT_CHECK_FAILED: Final = "DriftCheckFailed"
DRIFT_NOT_SUPPORTED: Final = "DriftNotSupported"

# Failures the runner reports in ``error.reason``.
DOWNGRADE_NOT_ALLOWED: Final = "DowngradeNotAllowed"
REVISION_NOT_FOUND: Final = "RevisionNotFound"
MULTIPLE_HEADS: Final = "MultipleHeads"
MIGRATION_FAILED: Final = "MigrationFailed"
DATABASE_UNAVAILABLE: Final = "DatabaseUnavailable"
#: Transient runner failures (exit 1, retried by the Job): the lock wait timed out, SIGTERM.
LOCK_TIMEOUT: Final = "LockTimeout"
INTERRUPTED: Final = "Interrupted"
#: A statement outlasted the runner's ``--statement-timeout`` (exit 3, not retried).
STATEMENT_TIMEOUT: Final = "StatementTimeout"
#: ``migrate --plan-digest``: what would run is not the approved plan (exit 2, nothing applied).
PLAN_CHANGED: Final = "PlanChanged"

# Failures the Job controller reports.
DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
BACKOFF_LIMIT_EXCEEDED: Final = "BackoffLimitExceeded"
#: The Job failed without a readable report and without a known Job-level reason.
JOB_FAILED: Final = "JobFailed"

# Failures the operator finds itself.
INVALID_SPEC: Final = "InvalidSpec"
#: The API server refused to create the Job (a 4xx other than 409: invalid, forbidden...).
JOB_REJECTED: Final = "JobRejected"
#: The Job's name is taken, in the resource's namespace, by a Job the resource does not own.
JOB_CONFLICT: Final = "JobConflict"
#: The Job exists but the cluster refuses its pod (the Job controller's ``FailedCreate``
#: Events: an invalid pod, PodSecurity, a LimitRange, a webhook).
POD_REJECTED: Final = "PodRejected"
#: ``Reconciling``: the pod is refused for now, by a ResourceQuota that may get room.
QUOTA_EXCEEDED: Final = "QuotaExceeded"
#: The operator's tenancy policy refuses the spec (image or ServiceAccount not allowed).
POLICY_DENIED: Final = "PolicyDenied"
#: Warning Event on a resource named as owner by a Job in another namespace, which is ignored.
FOREIGN_JOB_IGNORED: Final = "ForeignJobIgnored"

# Pod-level trouble seen while the Job is not finished (the kubelet keeps retrying).
SECRET_NOT_FOUND: Final = "SecretNotFound"
IMAGE_PULL_FAILED: Final = "ImagePullFailed"
#: The pod cannot be configured for another reason (a missing ConfigMap in ``job.env``, ...).
POD_CONFIG_ERROR: Final = "PodConfigError"
#: No node fits the pod (``PodScheduled=False``, ``Unschedulable``) for longer than the
#: operator's threshold (``UMT_OPERATOR_UNSCHEDULABLE_SECONDS``).
UNSCHEDULABLE: Final = "Unschedulable"
#: The container runtime could not start the container (command not in the image, bad
#: working directory, mount failure...).
CONTAINER_CANNOT_START: Final = "ContainerCannotStart"

#: Reasons the runner reports. Another well-formed CamelCase reason from a newer runner is
#: passed through as it is; a malformed one falls back to the Job's own reason.
RUNNER_REASONS: Final = frozenset(
    {
        DOWNGRADE_NOT_ALLOWED,
        REVISION_NOT_FOUND,
        MULTIPLE_HEADS,
        MIGRATION_FAILED,
        DATABASE_UNAVAILABLE,
        LOCK_TIMEOUT,
        INTERRUPTED,
        STATEMENT_TIMEOUT,
        INVALID_SPEC,  # a target the runner itself refuses (exit 2)
        PLAN_CHANGED,
    }
)

#: Job condition reasons (``Failed`` / ``FailureTarget``) passed through as they are.
JOB_FAILURE_REASONS: Final = frozenset({DEADLINE_EXCEEDED, BACKOFF_LIMIT_EXCEEDED})

#: Container waiting reasons meaning "the image cannot be pulled".
IMAGE_PULL_WAITING_REASONS: Final = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
#: Container waiting reason when env / volumes cannot be resolved (missing Secret or key).
CONFIG_WAITING_REASON: Final = "CreateContainerConfigError"
#: Container waiting reasons (the runtime refused to create or run it) and terminated reasons
#: (it never ran: ``StartError`` from containerd, ``ContainerCannotRun`` from Docker) meaning
#: "the container cannot start" (pkg/kubelet/container/sync_result.go, kuberuntime).
START_WAITING_REASONS: Final = frozenset({"CreateContainerError", "RunContainerError"})
START_TERMINATED_REASONS: Final = frozenset({"StartError", "ContainerCannotRun"})
