"""Run a new generation's Job only when something that can change its result changed.

A new generation usually means a new Job. But a Helm chart that makes every release a new
generation (``schema-migration``'s ``rerunOnUpgrade``) would start a pod on every upgrade to
find the database already there. So the reconciler compares the *inputs* of the new generation
with those of this resource instance's last successful run, and when they are the same reports
``Ready`` (reason ``InputsUnchanged``) without a Job.

The inputs are everything the runner's result depends on that the operator can see: the image
(as resolved, so an operator upgrade that changes the default image counts), the target,
``allowDowngrade``, the Alembic config and working directory, the database Secret's name and
key, the pod's environment and service account (env.py may read either), the runner command,
``spec.rerunToken``, and the resource's uid (a re-created resource never inherits a success).
Not among them, deliberately: the database itself. The operator never connects to it and never
reads Secrets, so it cannot see a database restored from a backup, downgraded by hand, or a new
URL written into the same Secret. For those, set ``spec.rerunToken`` to a new value: the next
generation runs a Job whatever else is equal. Pod placement, resources, labels, annotations and
``spec.safety`` do not change what a successful run leaves behind, so they are not inputs.

A skip needs the last run of this instance to have succeeded with the same inputs, and no Job
of this instance to have started since (the reconciler checks the Jobs it can still list, and
a Job's creation clears ``status.lastSuccess`` until it succeeds). Pure: no API calls here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from umt_operator import reasons
from umt_operator.settings import Settings
from umt_operator.spec import MigrationSpec
from umt_operator.status import kstatus_conditions, one_line

#: Written by ``status.compute_status`` when a Job succeeds; cleared while one runs or failed.
LAST_SUCCESS = "lastSuccess"


def inputs_digest(spec: MigrationSpec, settings: Settings, uid: str, image: str) -> str:
    """``sha256:<hex>`` of what a run of ``spec`` depends on (see the module's docstring)."""
    inputs = {
        "uid": uid,
        "image": image,
        "targetRevision": spec.target_revision,
        "allowDowngrade": spec.allow_downgrade,
        "alembicConfig": spec.alembic_config or settings.alembic_config,
        "workingDir": spec.alembic_working_dir,
        "database": [spec.database.name, spec.database.key],
        "env": spec.job.env,
        "serviceAccountName": spec.job.service_account_name or settings.job_service_account,
        "command": settings.runner_command,
        "rerunToken": spec.rerun_token,
    }
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def unchanged_since(status: Mapping[str, Any], digest: str) -> dict[str, Any] | None:
    """The last success when its inputs are ``digest``; else None (a Job must run)."""
    success = status.get(LAST_SUCCESS)
    if isinstance(success, Mapping) and success.get("inputs") == digest:
        return dict(success)
    return None


def skipped(status: Mapping[str, Any], generation: int) -> bool:
    """This generation was already reported Ready without a Job."""
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (status.get("observedGeneration") == generation
            and ready.get("reason") == reasons.INPUTS_UNCHANGED
            and ready.get("observedGeneration") == generation)


def unchanged_status(status: Mapping[str, Any], generation: int, success: Mapping[str, Any],
                     now: datetime) -> dict[str, Any]:
    """``Ready`` for ``generation`` without a Job: the last success still answers it."""
    at = status.get("currentRevision") or status.get("targetRevision") or "its target"
    message = one_line(
        f"no Job run: nothing the migration depends on changed since generation "
        f"{success.get('generation')} migrated the database to {at} (Job "
        f"{success.get('jobName')}); set spec.rerunToken to a new value to run it again"
    )
    conditions = kstatus_conditions(status, state="ready", reason=reasons.INPUTS_UNCHANGED,
                                    message=message, generation=generation, now=now)
    return {"observedGeneration": generation, "phase": "Succeeded", "jobName": None,
            "message": message, "conditions": conditions}
