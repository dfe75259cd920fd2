"""The run report: compact JSON of at most 4096 bytes, the Job's termination message.

The kubelet keeps at most 4096 bytes of a termination message, so the report is shrunk to fit
(error text first, then the list of applied revisions) and is valid JSON whatever it holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_BYTES = 4096
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
_ELLIPSIS = "…"


@dataclass
class Report:
    """What a ``migrate`` run did. Field names are the contract (README, "migrate --to REV")."""

    ok: bool
    direction: str = "none"  #: upgrade | downgrade | none
    fromRevision: str | None = None  # noqa: N815 - JSON field names are the contract
    toRevision: str | None = None  # noqa: N815
    targetRevision: str | None = None  # noqa: N815
    applied: list[str] = field(default_factory=list)
    durationSeconds: float = 0.0  # noqa: N815
    dryRun: bool = False  # noqa: N815
    database: str | None = None  #: host/database, never credentials
    error: dict[str, str] | None = None  #: {reason, message, revision?, blocker?, attempts?}
    #: runs of env.py: 1, plus one per retry after a lock timeout or a deadlock
    attempts: int = 0
    #: each failed attempt: {revision, attempt, reason, waitedSeconds, blocker, message,
    #: backoffSeconds?}; omitted when empty
    retries: list[dict[str, Any]] = field(default_factory=list)
    #: bounds revisions declared in their own files: {revision: {lockTimeout?, statementTimeout?}}
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the bounds the run used: {stepLockTimeoutSeconds, statementTimeoutSeconds, lockRetries,
    #: connectTimeoutSeconds}
    safety: dict[str, Any] | None = None

    def to_json(self, limit: int = MAX_BYTES) -> str:
        """Compact JSON no larger than ``limit`` bytes (UTF-8)."""
        data = asdict(self)
        for optional in ("error", "database", "safety", "retries", "declared"):
            if not data[optional]:
                del data[optional]
        data["durationSeconds"] = round(self.durationSeconds, 3)
        text = _dump(data)
        if len(text.encode()) <= limit:
            return text
        return _shrink(data, limit)


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _shrink(data: dict[str, Any], limit: int) -> str:
    retries = data.get("retries") or []
    for retry in retries:  # the blockers stay; the messages repeat them
        if len(_dump(data).encode()) <= limit:
            break
        retry.pop("message", None)
    while len(retries) > 1 and len(_dump(data).encode()) > limit:
        del retries[: max(1, len(retries) // 2)]  # the latest attempts matter most
    error = data.get("error")
    if error and len(_dump(data).encode()) > limit and error.get("message"):
        message = error["message"]
        excess = len(_dump(data).encode()) - limit
        keep = max(0, len(message) - excess - 16)
        while True:
            error["message"] = message[:keep] + _ELLIPSIS
            if len(_dump(data).encode()) <= limit or keep == 0:
                break
            keep = max(0, keep - 64)
    applied = data.get("applied") or []
    if len(_dump(data).encode()) > limit and applied:
        data["appliedCount"] = len(applied)
        keep = len(applied)
        while keep > 2 and len(_dump(data).encode()) > limit:
            keep //= 2
            data["applied"] = [*applied[: keep // 2], _ELLIPSIS, *applied[-(keep - keep // 2):]]
    text = _dump(data)
    if len(text.encode()) > limit:  # pathological: keep only what the operator needs
        kept = ("ok", "direction", "fromRevision", "toRevision")
        core: dict[str, Any] = {k: data[k] for k in kept if k in data}
        if error:
            core["error"] = {"reason": error.get("reason", ""), "message": _ELLIPSIS}
        text = _dump(core)
    return text


def report_destination(explicit: str | os.PathLike[str] | None) -> Path | None:
    """``--report``, else ``$TERMINATION_MESSAGE_PATH``, else /dev/termination-log if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TERMINATION_MESSAGE_PATH")
    if env:
        return Path(env)
    if DEFAULT_TERMINATION_LOG.exists():
        return DEFAULT_TERMINATION_LOG
    return None


def write_report(report: Report, destination: Path | None) -> None:
    """Write the report where it belongs (nothing to do when there is no destination)."""
    if destination is None:
        return
    destination.write_text(report.to_json(), encoding="utf-8")
