"""Operator settings from UMT_OPERATOR_* variables: defaults, parsing, errors naming variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from umt_operator.settings import DEFAULT_IMAGE, Settings, SettingsError

pytestmark = pytest.mark.unit


def test_defaults_without_any_variable() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.namespaces == ()
    assert settings.cluster_wide is True
    assert settings.default_image == DEFAULT_IMAGE
    assert settings.image_pull_policy is None
    assert (settings.job_backoff_limit, settings.job_active_deadline_seconds) == (2, 1800)
    assert settings.job_ttl_seconds_after_finished == 86400
    assert settings.job_service_account == ""
    assert settings.runner_command == "umt-migrations"
    assert settings.alembic_config == "/app/alembic.ini"
    assert settings.lock_timeout_seconds == 300
    assert (settings.metrics_port, settings.health_port) == (9090, 8080)
    assert settings.metrics_enabled is True
    assert settings.leader_election is False
    assert (settings.lease_name, settings.lease_namespace) == ("umt-schema-operator", "")
    assert settings.lease_duration_seconds == 15


def test_every_variable_is_read() -> None:
    env = {
        "UMT_OPERATOR_NAMESPACES": " umt, billing ,umt,",
        "UMT_OPERATOR_DEFAULT_IMAGE": "registry.example/umt:2.0",
        "UMT_OPERATOR_IMAGE_PULL_POLICY": "Always",
        "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "0",
        "UMT_OPERATOR_JOB_ACTIVE_DEADLINE_SECONDS": "600",
        "UMT_OPERATOR_JOB_TTL_SECONDS_AFTER_FINISHED": "0",
        "UMT_OPERATOR_JOB_SERVICE_ACCOUNT": "migrator",
        "UMT_OPERATOR_RUNNER_COMMAND": "/venv/bin/umt-migrations",
        "UMT_OPERATOR_ALEMBIC_CONFIG": "/srv/alembic.ini",
        "UMT_OPERATOR_LOCK_TIMEOUT_SECONDS": "60",
        "UMT_OPERATOR_METRICS_PORT": "0",
        "UMT_OPERATOR_HEALTH_PORT": "8081",
        "UMT_OPERATOR_LEADER_ELECTION": "true",
        "UMT_OPERATOR_LEASE_NAME": "umt.operator-lock",
        "UMT_OPERATOR_LEASE_NAMESPACE": "ops",
        "UMT_OPERATOR_LEASE_DURATION_SECONDS": "30",
        "UNRELATED": "ignored",
    }
    settings = Settings.from_env(env)
    assert settings == Settings(
        namespaces=("umt", "billing"),
        default_image="registry.example/umt:2.0",
        image_pull_policy="Always",
        job_backoff_limit=0,
        job_active_deadline_seconds=600,
        job_ttl_seconds_after_finished=0,
        job_service_account="migrator",
        runner_command="/venv/bin/umt-migrations",
        alembic_config="/srv/alembic.ini",
        lock_timeout_seconds=60,
        metrics_port=0,
        health_port=8081,
        leader_election=True,
        lease_name="umt.operator-lock",
        lease_namespace="ops",
        lease_duration_seconds=30,
    )
    assert settings.cluster_wide is False
    assert settings.metrics_enabled is False


def test_every_field_has_a_variable() -> None:
    """A new field without a parser would silently ignore its variable."""
    from umt_operator.settings import _PARSERS

    assert set(_PARSERS) == {f.name for f in dataclasses.fields(Settings)}


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMT_OPERATOR_JOB_BACKOFF_LIMIT", "4")
    assert Settings.from_env().job_backoff_limit == 4


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("JOB_BACKOFF_LIMIT", "x", "must be an integer between 0 and 10, got 'x'"),
        ("JOB_BACKOFF_LIMIT", "11", "must be an integer between 0 and 10, got '11'"),
        ("JOB_ACTIVE_DEADLINE_SECONDS", "0", "must be an integer between 1 and 86400"),
        ("JOB_TTL_SECONDS_AFTER_FINISHED", "-1", "must be an integer between 0 and 604800"),
        ("METRICS_PORT", "70000", "must be an integer between 0 and 65535"),
        ("HEALTH_PORT", "0", "must be an integer between 1 and 65535"),
        ("LOCK_TIMEOUT_SECONDS", "1.5", "must be an integer between 0 and 86400"),
        ("IMAGE_PULL_POLICY", "Sometimes", "must be one of Always, IfNotPresent, Never"),
        ("DEFAULT_IMAGE", " ", "must not be empty, got ' '"),
        ("RUNNER_COMMAND", "", "must not be empty"),
        ("NAMESPACES", "umt,Bad_NS", "Bad_NS is not a valid namespace name"),
        ("LEADER_ELECTION", "maybe", "must be true or false"),
        ("LEASE_NAME", "Umt_Lock", "must be a lowercase DNS subdomain name"),
        ("LEASE_NAME", "", "must be a lowercase DNS subdomain name"),
        ("LEASE_NAMESPACE", "ops.team", "must be a lowercase DNS label"),
        ("LEASE_DURATION_SECONDS", "1", "must be an integer between 2 and 3600"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({f"UMT_OPERATOR_{name}": value})
    assert f"UMT_OPERATOR_{name}: {message}" in str(caught.value)


def test_all_errors_are_reported_at_once() -> None:
    env = {"UMT_OPERATOR_JOB_BACKOFF_LIMIT": "x", "UMT_OPERATOR_METRICS_PORT": "-1"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == (
        "invalid operator settings: "
        "UMT_OPERATOR_JOB_BACKOFF_LIMIT: must be an integer between 0 and 10, got 'x'; "
        "UMT_OPERATOR_METRICS_PORT: must be an integer between 0 and 65535, got '-1'"
    )


def test_empty_optional_values() -> None:
    env = {
        "UMT_OPERATOR_NAMESPACES": "",
        "UMT_OPERATOR_IMAGE_PULL_POLICY": "",
        "UMT_OPERATOR_JOB_SERVICE_ACCOUNT": "",
    }
    settings = Settings.from_env(env)
    assert settings.cluster_wide and settings.image_pull_policy is None
    assert settings.job_service_account == ""


def test_settings_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().job_backoff_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("True", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("", False),
])
def test_leader_election_switch(raw: str, expected: bool, tmp_path: Path) -> None:
    env = {"UMT_OPERATOR_LEADER_ELECTION": raw, "UMT_OPERATOR_LEASE_NAMESPACE": "ops"}
    assert Settings.from_env(env, pod_namespace_file=tmp_path / "none").leader_election is expected


def test_lease_namespace_defaults_to_the_pods_own(tmp_path: Path) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("umt-system\n")
    env = {"UMT_OPERATOR_LEADER_ELECTION": "true"}
    settings = Settings.from_env(env, pod_namespace_file=namespace_file)
    assert settings.lease_namespace == "umt-system"
    env["UMT_OPERATOR_LEASE_NAMESPACE"] = "ops"  # an explicit one wins
    assert Settings.from_env(env, pod_namespace_file=namespace_file).lease_namespace == "ops"


def test_lease_namespace_is_required_outside_a_pod(tmp_path: Path) -> None:
    missing = tmp_path / "namespace"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"UMT_OPERATOR_LEADER_ELECTION": "on"}, pod_namespace_file=missing)
    assert "UMT_OPERATOR_LEASE_NAMESPACE: required when UMT_OPERATOR_LEADER_ELECTION is on" \
        in str(caught.value)
    # without leader election, no namespace is needed and none is looked up
    assert Settings.from_env({}, pod_namespace_file=missing).lease_namespace == ""
