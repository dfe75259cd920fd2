"""The tenancy policy (issue 13, finding 7): which images and ServiceAccounts may run.

The same decisions as the chart's ValidatingAdmissionPolicy (tests/unit/test_operator_chart.py
evaluates its CEL on the same kind of cases).
"""

from __future__ import annotations

import pytest

from umt_operator.policy import Policy, pattern_regex, repository_of, repository_patterns
from umt_operator.settings import Settings, SettingsError

pytestmark = pytest.mark.unit

DEFAULT = "ghcr.io/umt/umt-migrations:0.1.0"


@pytest.mark.parametrize(("image", "repository"), [
    ("ghcr.io/umt/umt-migrations:0.1.0", "ghcr.io/umt/umt-migrations"),
    ("ghcr.io/umt/umt-migrations@sha256:0abc", "ghcr.io/umt/umt-migrations"),
    ("ghcr.io/umt/umt-migrations:0.1.0@sha256:0abc", "ghcr.io/umt/umt-migrations"),
    ("registry.local:5000/umt:2", "registry.local:5000/umt"),
    ("registry.local:5000/umt", "registry.local:5000/umt"),
    ("umt", "umt"),
])
def test_repository_of(image: str, repository: str) -> None:
    assert repository_of(image) == repository


def test_by_default_only_the_operators_own_repository_and_account() -> None:
    policy = Settings(default_image=DEFAULT).policy
    assert policy.images == repository_patterns(DEFAULT)
    assert policy.image_allowed("ghcr.io/umt/umt-migrations:0.2.0")
    assert policy.image_allowed("ghcr.io/umt/umt-migrations@sha256:" + "a" * 64)
    assert not policy.image_allowed("evil.example/steal-db-url:1")
    assert not policy.image_allowed("ghcr.io/umt/umt-migrations-fork:1")
    assert policy.service_account_allowed(None) and policy.service_account_allowed("default")
    assert not policy.service_account_allowed("cluster-admin")
    problem = policy.image_problem("evil.example/steal-db-url:1")
    assert problem and "evil.example/steal-db-url:1" in problem
    assert "UMT_OPERATOR_ALLOWED_IMAGES" in problem


def test_the_jobs_default_account_is_the_default_allowed_one() -> None:
    policy = Settings(job_service_account="umt-migrator").policy
    assert policy.service_account_allowed("umt-migrator")
    assert not policy.service_account_allowed("default")


@pytest.mark.parametrize(("pattern", "image", "matches"), [
    ("*", "anything/at:all", True),
    ("registry.example/*", "registry.example/a/b:c", True),
    ("registry.example/*", "registry.exampleX/a", False),
    ("registry.example/umt:1.*", "registry.example/umt:1.4.0", True),
    ("registry.example/umt:1.*", "registry.example/umt:10", False),
    ("a+b(c)[d]:*", "a+b(c)[d]:1", True),  # every character but * stands for itself
])
def test_patterns(pattern: str, image: str, matches: bool) -> None:
    assert Policy.from_settings([pattern], [], "x:1", "").image_allowed(image) == matches
    assert pattern_regex(pattern).startswith("^") and pattern_regex(pattern).endswith("$")


def test_a_star_allows_any_account() -> None:
    assert Policy.from_settings([], ["*"], DEFAULT, "").service_account_allowed("root-ish")


def test_settings_read_the_policy_and_name_bad_values() -> None:
    settings = Settings.from_env({
        "UMT_OPERATOR_ALLOWED_IMAGES": " registry.example/*, ghcr.io/x:* ",
        "UMT_OPERATOR_ALLOWED_SERVICE_ACCOUNTS": "migrator,*"})
    assert settings.allowed_images == ("registry.example/*", "ghcr.io/x:*")
    assert settings.allowed_service_accounts == ("migrator", "*")
    with pytest.raises(SettingsError, match="UMT_OPERATOR_ALLOWED_SERVICE_ACCOUNTS"):
        Settings.from_env({"UMT_OPERATOR_ALLOWED_SERVICE_ACCOUNTS": "Ops_Admin"})
