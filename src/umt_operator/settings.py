"""The operator's settings: one typed object read from ``UMT_OPERATOR_*`` environment variables.

Every variable is checked at startup; all problems are reported together, each naming the
variable, so a bad Helm value shows up as one readable line in the operator's log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from umt_operator.policy import Policy
from umt_operator.spec import (
    ACTIVE_DEADLINE_RANGE,
    BACKOFF_LIMIT_RANGE,
    CONNECT_TIMEOUT_SECONDS_RANGE,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_LOCK_RETRIES_COUNT,
    DEFAULT_STATEMENT_TIMEOUT_MILLISECONDS,
    DEFAULT_STEP_LOCK_TIMEOUT_MILLISECONDS,
    IMAGE_PULL_POLICIES,
    LOCK_RETRIES_RANGE,
    TIMEOUT_MILLISECONDS_RANGE,
    TTL_AFTER_FINISHED_RANGE,
)

PREFIX = "UMT_OPERATOR_"
DEFAULT_IMAGE = "ghcr.io/umt/umt-migrations:0.1.0"
#: The liveness endpoint's path (kopf's, or the standby's while it waits for the Lease).
HEALTH_PATH = "/healthz"
#: Where Kubernetes mounts the pod's service account: its token, CA bundle and namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
POD_NAMESPACE_FILE = SERVICE_ACCOUNT_DIR / "namespace"


class SettingsError(ValueError):
    """One or more ``UMT_OPERATOR_*`` variables are invalid; the message names each of them."""


@dataclass(frozen=True)
class Settings:
    """Operator-wide configuration. Field ``x`` comes from ``UMT_OPERATOR_X``."""

    namespaces: tuple[str, ...] = ()
    default_image: str = DEFAULT_IMAGE
    image_pull_policy: str | None = None
    job_backoff_limit: int = 2
    job_active_deadline_seconds: int = 1800
    job_ttl_seconds_after_finished: int = 86400
    job_service_account: str = ""
    runner_command: str = "umt-migrations"
    alembic_config: str = "/app/alembic.ini"
    lock_timeout_seconds: int = 300
    #: Defaults of ``spec.safety`` (the runner's ``--step-lock-timeout`` and friends).
    step_lock_timeout_milliseconds: int = DEFAULT_STEP_LOCK_TIMEOUT_MILLISECONDS
    statement_timeout_milliseconds: int = DEFAULT_STATEMENT_TIMEOUT_MILLISECONDS
    lock_retries: int = DEFAULT_LOCK_RETRIES_COUNT
    connect_timeout_seconds: int = DEFAULT_CONNECT_TIMEOUT_SECONDS
    metrics_port: int = 9090
    health_port: int = 8080
    #: How long a migration pod may wait for a node before the resource is ``Stalled``.
    unschedulable_seconds: int = 60
    leader_election: bool = False
    lease_name: str = "umt-schema-operator"
    lease_namespace: str = ""  # default: the pod's own namespace
    lease_duration_seconds: int = 15
    #: The tenancy policy (policy.py): image patterns and ServiceAccounts a SchemaMigration
    #: may use; empty: the default image's repository, the Jobs' default account.
    allowed_images: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()

    @property
    def policy(self) -> Policy:
        """What a SchemaMigration may run: these settings with their defaults filled in."""
        return Policy.from_settings(self.allowed_images, self.allowed_service_accounts,
                                    self.default_image, self.job_service_account)

    @property
    def cluster_wide(self) -> bool:
        """True when no namespace is listed: the operator watches all namespaces."""
        return not self.namespaces

    @property
    def metrics_enabled(self) -> bool:
        """False when ``UMT_OPERATOR_METRICS_PORT`` is 0."""
        return self.metrics_port != 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 pod_namespace_file: Path = POD_NAMESPACE_FILE) -> Settings:
        """Read and validate the settings from ``environ`` (default: ``os.environ``).

        The Lease's namespace defaults to the pod's own, read from ``pod_namespace_file``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        errors: list[str] = []
        for field_name, parse in _PARSERS.items():
            raw = env.get(PREFIX + field_name.upper())
            if raw is None:
                continue
            try:
                values[field_name] = parse(raw.strip())
            except ValueError as exc:
                errors.append(f"{PREFIX}{field_name.upper()}: {exc}, got {raw!r}")
        settings = cls(**values)
        if settings.leader_election and not settings.lease_namespace:
            settings = replace(settings, lease_namespace=_pod_namespace(pod_namespace_file))
            if not settings.lease_namespace:
                errors.append(f"{PREFIX}LEASE_NAMESPACE: required when {PREFIX}LEADER_ELECTION "
                              f"is on outside a pod (no {pod_namespace_file})")
        if errors:
            raise SettingsError("invalid operator settings: " + "; ".join(errors))
        return settings


def _pod_namespace(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"must be an integer between {low} and {high}")
        return value

    return parse


def _non_empty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _namespaces(raw: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    bad = [name for name in names if not _is_dns_label(name)]
    if bad:
        raise ValueError(f"{', '.join(bad)} is not a valid namespace name")
    return names


def _patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated image patterns (``*`` matches anything); empty: the default."""
    patterns = tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))
    if any(char.isspace() for pattern in patterns for char in pattern):
        raise ValueError("must be comma-separated image patterns without spaces")
    return patterns


def _accounts(raw: str) -> tuple[str, ...]:
    """Comma-separated ServiceAccount names, or ``*``; empty: the default."""
    names = tuple(dict.fromkeys(item.strip() for item in raw.split(",") if item.strip()))
    for name in names:
        if name != "*":
            _dns_subdomain(name)
    return names


def _boolean(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _dns_label(raw: str) -> str:
    if raw and not _is_dns_label(raw):
        raise ValueError("must be a lowercase DNS label (a-z, 0-9, '-', at most 63)")
    return raw


def _dns_subdomain(raw: str) -> str:
    labels = raw.split(".")
    if not 0 < len(raw) <= 253 or not all(_is_dns_label(label) for label in labels):
        raise ValueError("must be a lowercase DNS subdomain name (a-z, 0-9, '-', '.')")
    return raw


def _pull_policy(raw: str) -> str | None:
    if raw and raw not in IMAGE_PULL_POLICIES:
        raise ValueError(f"must be one of {', '.join(IMAGE_PULL_POLICIES)} (or empty)")
    return raw or None


def _is_dns_label(name: str) -> bool:
    return (
        0 < len(name) <= 63
        and name[0].isalnum()
        and name[-1].isalnum()
        and all(c.islower() or c.isdigit() or c == "-" for c in name)
        and name.isascii()
    )


_PARSERS: dict[str, Callable[[str], Any]] = {
    "namespaces": _namespaces,
    "default_image": _non_empty,
    "image_pull_policy": _pull_policy,
    "job_backoff_limit": _integer(*BACKOFF_LIMIT_RANGE),
    "job_active_deadline_seconds": _integer(*ACTIVE_DEADLINE_RANGE),
    "job_ttl_seconds_after_finished": _integer(*TTL_AFTER_FINISHED_RANGE),
    "job_service_account": str,
    "runner_command": _non_empty,
    "alembic_config": _non_empty,
    "lock_timeout_seconds": _integer(0, 86400),
    "step_lock_timeout_milliseconds": _integer(*TIMEOUT_MILLISECONDS_RANGE),
    "statement_timeout_milliseconds": _integer(*TIMEOUT_MILLISECONDS_RANGE),
    "lock_retries": _integer(*LOCK_RETRIES_RANGE),
    "connect_timeout_seconds": _integer(*CONNECT_TIMEOUT_SECONDS_RANGE),
    "metrics_port": _integer(0, 65535),
    "health_port": _integer(1, 65535),
    "unschedulable_seconds": _integer(0, 86400),
    "leader_election": _boolean,
    "lease_name": _dns_subdomain,
    "lease_namespace": _dns_label,
    "lease_duration_seconds": _integer(2, 3600),
    "allowed_images": _patterns,
    "allowed_service_accounts": _accounts,
}
