"""Failure reasons, exit codes and the one exception type the engine raises.

Reasons are the same CamelCase words the operator writes into the SchemaMigration's
conditions, so a person sees one vocabulary in the CLI, the report, events and ``kubectl get``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of ``migrate`` (the Job's podFailurePolicy relies on them)."""

    OK = 0
    TRANSIENT = 1  #: database unreachable, lock timeout, interrupted: retry may help
    INVALID = 2  #: the request cannot succeed as asked: fix the spec
    FAILED = 3  #: a migration script failed; database left at the last committed revision


# Reasons (condition reasons, report error.reason).
DOWNGRADE_NOT_ALLOWED = "DowngradeNotAllowed"
REVISION_NOT_FOUND = "RevisionNotFound"
MULTIPLE_HEADS = "MultipleHeads"
MIGRATION_FAILED = "MigrationFailed"
DATABASE_UNAVAILABLE = "DatabaseUnavailable"
INVALID_SPEC = "InvalidSpec"
#: Transient reasons beyond the condition reasons: a lock wait that timed out and a run
#: stopped by SIGTERM. Both exit 1, so the Job retries them.
LOCK_TIMEOUT = "LockTimeout"
INTERRUPTED = "Interrupted"
#: A statement ran longer than ``--statement-timeout`` (or the revision's own
#: ``statement_timeout``): exit 3, since a blind retry would repeat the same long work.
STATEMENT_TIMEOUT = "StatementTimeout"
#: ``migrate --plan-digest``: what would run now is not the plan that was approved.
PLAN_CHANGED = "PlanChanged"

EXIT_CODES: dict[str, ExitCode] = {
    DOWNGRADE_NOT_ALLOWED: ExitCode.INVALID,
    REVISION_NOT_FOUND: ExitCode.INVALID,
    MULTIPLE_HEADS: ExitCode.INVALID,
    INVALID_SPEC: ExitCode.INVALID,
    PLAN_CHANGED: ExitCode.INVALID,
    MIGRATION_FAILED: ExitCode.FAILED,
    STATEMENT_TIMEOUT: ExitCode.FAILED,
    DATABASE_UNAVAILABLE: ExitCode.TRANSIENT,
    LOCK_TIMEOUT: ExitCode.TRANSIENT,
    INTERRUPTED: ExitCode.TRANSIENT,
}


class MigrationError(Exception):
    """A failure with a reason from the list above and a message a person can act on.

    The message must already be free of secrets: build it with :mod:`umt_migrations.urls`.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        revision: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.revision = revision
        #: more fields of the report's ``error`` (``blocker`` of a LockTimeout, say)
        self.extra = extra or {}

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_CODES.get(self.reason, ExitCode.FAILED)
