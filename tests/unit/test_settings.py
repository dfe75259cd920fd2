"""Operator settings from UMT_OPERATOR_* variables: defaults, parsing, errors naming variables."""

from __future__ import annotations

import dataclasses

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
