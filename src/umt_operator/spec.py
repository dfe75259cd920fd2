"""The ``SchemaMigration`` spec as a typed model, parsed and checked from the resource body.

The CRD's OpenAPI schema and CEL rules reject most bad specs at the API server. This module
applies the same defaults and re-checks the rules that matter, so a resource that reached the
operator without schema validation (an old CRD, an API emulator) still ends in a clear
``InvalidSpec`` message instead of a broken Job. The revision patterns below are the ones the
CRD's CEL rules use (the CRD tests check that both stay identical).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from umt_migrations.safety import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_LOCK_RETRIES,
    DEFAULT_STEP_LOCK_TIMEOUT,
    MAX_CONNECT_SECONDS,
    MAX_LOCK_RETRIES,
    MAX_SECONDS,
)

#: A relative revision (``+1``, ``head-1``, ``abc+2``, ``feature@-1``): refused, because the
#: target of a declarative resource must not move with the database's current revision. This is
#: Alembic's own test (``_relative_destination`` in ``alembic/script/revision.py``, matched from
#: the start), written for RE2, whose ``\w`` is ASCII-only.
RELATIVE_REVISION_PATTERN = r"^(.+@)?[A-Za-z0-9_]*[+-][0-9]"
#: Accepted targets: ``head``, ``heads``, ``base`` or a (partial) revision id, optionally after
#: ``<branch>@``; a revision id is anything without ``@ - + :`` (Alembic's
#: ``_revision_illegal_chars``), e.g. ``v3.0.0.c`` or ``0001_initial``. ``<branch>@base`` is
#: refused separately (:data:`BRANCH_BASE_SUFFIX`): it would take one branch down, which the
#: runner does not do. The case table in ``tests/revision_ids.py`` drives the tests of this, of
#: the CRD's rules and of the runner's check.
REVISION_PATTERN = r"^([^@:+-]+|[^@:]+@[^@:+-]+)$"
BRANCH_BASE_SUFFIX = "@base"
#: A Secret name (DNS-1123 subdomain).
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A key inside a Secret.
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: A resource quantity (``100m``, ``512Mi``, ``1.5``, ``1e3``), as controller-gen writes it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
#: A label value (may be empty).
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_LABEL_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_PATTERN = rf"^({_LABEL_PREFIX}/)?{_LABEL_NAME}$"

RELATIVE_REVISION_MESSAGE = (
    "targetRevision must name a revision (head, heads, base, <branch>@head or a revision id); "
    "relative identifiers such as +1 or head-1 are not supported"
)
REVISION_FORMAT_MESSAGE = (
    "targetRevision must be head, heads, base, <branch>@head or a revision id "
    "(any characters but @, -, + and :); <branch>@base is not supported"
)
WORKING_DIR_MESSAGE = "alembic.workingDir must be an absolute path (starting with /)"
SECRET_NAME_MESSAGE = (
    "database.urlSecretRef.name must name a Secret in the same namespace "
    "(lowercase letters, digits, '-' and '.', at most 253 characters)"
)
SERVICE_ACCOUNT_MESSAGE = (
    "job.serviceAccountName must be a ServiceAccount name (lowercase letters, digits, '-' and "
    "'.', at most 253 characters)"
)
SECRET_KEY_MESSAGE = (
    "database.urlSecretRef.key must be a key of the Secret (letters, digits, '-', '_' or '.')"
)

#: Environment variables the operator sets itself; a spec may not override them.
RESERVED_ENV_NAMES = ("DATABASE_URL", "TERMINATION_MESSAGE_PATH")
RESERVED_ENV_MESSAGE = (
    "job.env must not set DATABASE_URL or TERMINATION_MESSAGE_PATH: the operator sets them "
    "(the URL comes from database.urlSecretRef)"
)

#: Inclusive ranges of the Job knobs, shared by the CRD, the spec and the operator settings.
BACKOFF_LIMIT_RANGE = (0, 10)
ACTIVE_DEADLINE_RANGE = (1, 86400)
TTL_AFTER_FINISHED_RANGE = (0, 604800)

#: Inclusive ranges of ``spec.safety`` (the runner's ``--step-lock-timeout`` and friends), shared
#: by the CRD, the spec, the operator settings and the charts. Lock and statement timeouts are
#: whole milliseconds (PostgreSQL's own unit; a lock timeout under a second is common practice),
#: 0 meaning no limit; the connect timeout is whole seconds (libpq's ``connect_timeout``).
TIMEOUT_MILLISECONDS_RANGE = (0, int(MAX_SECONDS * 1000))
LOCK_RETRIES_RANGE = (0, MAX_LOCK_RETRIES)
CONNECT_TIMEOUT_SECONDS_RANGE = (1, int(MAX_CONNECT_SECONDS))
#: The runner's own defaults, in the units of ``spec.safety``.
DEFAULT_STEP_LOCK_TIMEOUT_MILLISECONDS = int(DEFAULT_STEP_LOCK_TIMEOUT * 1000)
DEFAULT_STATEMENT_TIMEOUT_MILLISECONDS = 0
DEFAULT_LOCK_RETRIES_COUNT = DEFAULT_LOCK_RETRIES
DEFAULT_CONNECT_TIMEOUT_SECONDS = int(DEFAULT_CONNECT_TIMEOUT)

IMAGE_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_SECRET_KEY = "url"
MAX_TARGET_LENGTH = 128
MAX_RERUN_TOKEN_LENGTH = 253


class InvalidSpec(ValueError):  # noqa: N818 - named for the problem, like StopIteration
    """A spec the operator cannot act on; the message says what to change."""


@dataclass(frozen=True)
class SecretRef:
    """Where the database URL lives: a key of a Secret in the resource's namespace."""

    name: str
    key: str = DEFAULT_SECRET_KEY


@dataclass(frozen=True)
class JobOptions:
    """Optional knobs for the Job and its pod; ``None`` / empty means the operator default."""

    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    service_account_name: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    env: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SafetyOptions:
    """Bounds that keep a migration from stalling a busy database (``spec.safety``).

    ``None`` means the operator's default (``UMT_OPERATOR_STEP_LOCK_TIMEOUT_MILLISECONDS`` and
    friends); a timeout of 0 means no limit.
    """

    step_lock_timeout_milliseconds: int | None = None
    statement_timeout_milliseconds: int | None = None
    lock_retries: int | None = None
    connect_timeout_seconds: int | None = None


@dataclass(frozen=True)
class MigrationSpec:
    """What a ``SchemaMigration`` asks for."""

    target_revision: str
    database: SecretRef
    allow_downgrade: bool = False
    image: str | None = None
    image_pull_policy: str | None = None
    alembic_config: str | None = None
    alembic_working_dir: str | None = None  #: the container's workingDir
    job: JobOptions = field(default_factory=JobOptions)
    safety: SafetyOptions = field(default_factory=SafetyOptions)
    #: Any new value runs the migration again even when nothing else changed (see rerun.py).
    rerun_token: str | None = None


def revision_problem(target: Any) -> str | None:
    """Why ``target`` is not an acceptable ``targetRevision``, or None when it is."""
    if not isinstance(target, str) or not target:
        return "targetRevision is required (e.g. head or a revision id)"
    if len(target) > MAX_TARGET_LENGTH:
        return f"targetRevision must be at most {MAX_TARGET_LENGTH} characters"
    if re.match(RELATIVE_REVISION_PATTERN, target):
        return RELATIVE_REVISION_MESSAGE
    if not re.fullmatch(REVISION_PATTERN, target) or target.endswith(BRANCH_BASE_SUFFIX):
        return REVISION_FORMAT_MESSAGE
    return None


def parse_spec(body_spec: Mapping[str, Any] | None) -> MigrationSpec:
    """Build a :class:`MigrationSpec` from ``body["spec"]``, applying the CRD's defaults.

    Raises :class:`InvalidSpec` naming every problem found, in one message.
    """
    spec = body_spec if isinstance(body_spec, Mapping) else {}
    problems: list[str] = []
    target = spec.get("targetRevision")
    if (problem := revision_problem(target)) is not None:
        problems.append(problem)
    allow_downgrade = spec.get("allowDowngrade", False)
    if not isinstance(allow_downgrade, bool):
        problems.append("allowDowngrade must be true or false")
    secret = _parse_secret_ref(spec.get("database"), problems)
    image = _optional_str(spec, "image", problems)
    pull_policy = _optional_str(spec, "imagePullPolicy", problems)
    if pull_policy is not None and pull_policy not in IMAGE_PULL_POLICIES:
        problems.append(f"imagePullPolicy must be one of {', '.join(IMAGE_PULL_POLICIES)}")
    alembic = _or_empty(spec.get("alembic"), {})
    if not isinstance(alembic, Mapping):
        problems.append(
            "alembic must be an object: {config: /path/to/alembic.ini, workingDir: /path}"
        )
        alembic = {}
    config = _optional_str(alembic, "config", problems, "alembic.config")
    working_dir = _optional_str(alembic, "workingDir", problems, "alembic.workingDir")
    if working_dir is not None and not working_dir.startswith("/"):
        problems.append(WORKING_DIR_MESSAGE)
    job = _parse_job(_or_empty(spec.get("job"), {}), problems)
    safety = _parse_safety(_or_empty(spec.get("safety"), {}), problems)
    rerun_token = _optional_str(spec, "rerunToken", problems)
    if rerun_token is not None and len(rerun_token) > MAX_RERUN_TOKEN_LENGTH:
        problems.append(f"rerunToken must be at most {MAX_RERUN_TOKEN_LENGTH} characters")
    if problems:
        raise InvalidSpec("; ".join(problems))
    return MigrationSpec(
        target_revision=str(target),
        database=secret,
        allow_downgrade=bool(allow_downgrade),
        image=image or None,
        image_pull_policy=pull_policy,
        alembic_config=config or None,
        alembic_working_dir=working_dir or None,
        job=job,
        safety=safety,
        rerun_token=rerun_token or None,
    )


def _or_empty(value: Any, empty: Any) -> Any:
    """``value``, or ``empty`` when it is null (a wrong type is kept, to be reported)."""
    return empty if value is None else value


def _optional_str(
    obj: Mapping[str, Any], key: str, problems: list[str], label: str | None = None
) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{label or key} must be a string")
    return None


def _parse_secret_ref(database: Any, problems: list[str]) -> SecretRef:
    ref = database.get("urlSecretRef") if isinstance(database, Mapping) else None
    if not isinstance(ref, Mapping):
        problems.append("database.urlSecretRef is required: {name: <secret>, key: url}")
        return SecretRef(name="", key=DEFAULT_SECRET_KEY)
    name = ref.get("name")
    key = ref.get("key", DEFAULT_SECRET_KEY)
    if not isinstance(name, str) or len(name) > 253 or not re.fullmatch(SECRET_NAME_PATTERN, name):
        problems.append(SECRET_NAME_MESSAGE)
    if not isinstance(key, str) or len(key) > 253 or not re.fullmatch(SECRET_KEY_PATTERN, key):
        problems.append(SECRET_KEY_MESSAGE)
    return SecretRef(name=str(name or ""), key=str(key or ""))


def _int_in_range(
    job: Mapping[str, Any], key: str, bounds: tuple[int, int], problems: list[str],
    section: str = "job",
) -> int | None:
    value = job.get(key)
    if value is None:
        return None
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(
            f"{section}.{key} must be an integer between {low} and {high}, got {value!r}"
        )
        return None
    return value


def _string_map(job: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, str]:
    value = _or_empty(job.get(key), {})
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.append(f"job.{key} must map strings to strings")
        return {}
    return dict(value)


def _check_labels(labels: Mapping[str, str], problems: list[str]) -> None:
    for key, value in labels.items():
        if len(key.rpartition("/")[2]) > 63 or not re.fullmatch(LABEL_KEY_PATTERN, key):
            problems.append(f"job.podLabels: {key!r} is not a valid label key")
        if len(value) > 63 or not re.fullmatch(LABEL_VALUE_PATTERN, value):
            problems.append(f"job.podLabels: value of {key!r} is not a valid label value")


def _list_of_objects(job: Mapping[str, Any], key: str,
                     problems: list[str]) -> list[dict[str, Any]]:
    value = _or_empty(job.get(key), [])
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        problems.append(f"job.{key} must be a list of objects")
        return []
    return copy.deepcopy([dict(item) for item in value])


def _check_env(env: list[dict[str, Any]], problems: list[str]) -> None:
    for item in env:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            problems.append("job.env: every entry needs a name")
        elif name in RESERVED_ENV_NAMES:
            problems.append(RESERVED_ENV_MESSAGE)
        if "value" in item and "valueFrom" in item:
            problems.append(f"job.env: {name!r} takes either value or valueFrom, not both")


def _parse_resources(resources: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    sections = ("requests", "limits")
    if not isinstance(resources, Mapping) or not set(resources) <= set(sections):
        problems.append("job.resources must be an object with requests and/or limits")
        return {}
    result: dict[str, dict[str, Any]] = {}
    for section in sections:
        values = _or_empty(resources.get(section), {})
        if not isinstance(values, Mapping):
            problems.append(f"job.resources.{section} must map resource names to quantities")
            continue
        for name, quantity in values.items():
            if isinstance(quantity, bool) or not re.fullmatch(QUANTITY_PATTERN, str(quantity)):
                problems.append(
                    f"job.resources.{section}.{name}: {quantity!r} is not a quantity "
                    "(e.g. 100m, 512Mi, 2)"
                )
        if values:
            result[section] = dict(values)
    return result


def _parse_job(job: Any, problems: list[str]) -> JobOptions:
    if not isinstance(job, Mapping):
        problems.append("job must be an object")
        return JobOptions()
    resources = _parse_resources(_or_empty(job.get("resources"), {}), problems)
    labels = _string_map(job, "podLabels", problems)
    _check_labels(labels, problems)
    env = _list_of_objects(job, "env", problems)
    _check_env(env, problems)
    account = job.get("serviceAccountName")
    if account is not None and not isinstance(account, str):
        problems.append("job.serviceAccountName must be a string")
        account = None
    elif account and (len(account) > 253 or not re.fullmatch(SECRET_NAME_PATTERN, account)):
        problems.append(SERVICE_ACCOUNT_MESSAGE)
    annotations = _string_map(job, "podAnnotations", problems)
    for key in annotations:
        if len(key.rpartition("/")[2]) > 63 or not re.fullmatch(LABEL_KEY_PATTERN, key):
            problems.append(f"job.podAnnotations: {key!r} is not a valid annotation key")
    return JobOptions(
        backoff_limit=_int_in_range(job, "backoffLimit", BACKOFF_LIMIT_RANGE, problems),
        active_deadline_seconds=_int_in_range(
            job, "activeDeadlineSeconds", ACTIVE_DEADLINE_RANGE, problems
        ),
        ttl_seconds_after_finished=_int_in_range(
            job, "ttlSecondsAfterFinished", TTL_AFTER_FINISHED_RANGE, problems
        ),
        service_account_name=account or None,
        resources=resources,
        node_selector=_string_map(job, "nodeSelector", problems),
        tolerations=_list_of_objects(job, "tolerations", problems),
        pod_labels=labels,
        pod_annotations=annotations,
        env=env,
    )


def _parse_safety(safety: Any, problems: list[str]) -> SafetyOptions:
    if not isinstance(safety, Mapping):
        problems.append("safety must be an object")
        return SafetyOptions()

    def bounded(key: str, bounds: tuple[int, int]) -> int | None:
        return _int_in_range(safety, key, bounds, problems, "safety")

    return SafetyOptions(
        step_lock_timeout_milliseconds=bounded(
            "stepLockTimeoutMilliseconds", TIMEOUT_MILLISECONDS_RANGE
        ),
        statement_timeout_milliseconds=bounded(
            "statementTimeoutMilliseconds", TIMEOUT_MILLISECONDS_RANGE
        ),
        lock_retries=bounded("lockRetries", LOCK_RETRIES_RANGE),
        connect_timeout_seconds=bounded("connectTimeoutSeconds", CONNECT_TIMEOUT_SECONDS_RANGE),
    )
