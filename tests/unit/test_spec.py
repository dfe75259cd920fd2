"""parse_spec: the CRD's defaults and rules, re-checked for resources that skipped the schema."""

from __future__ import annotations

from typing import Any

import pytest

from tests.revision_ids import ACCEPTED, MALFORMED, RELATIVE, TargetCase
from umt_operator.spec import (
    RELATIVE_REVISION_MESSAGE,
    RESERVED_ENV_MESSAGE,
    REVISION_FORMAT_MESSAGE,
    SECRET_KEY_MESSAGE,
    SECRET_NAME_MESSAGE,
    WORKING_DIR_MESSAGE,
    InvalidSpec,
    JobOptions,
    MigrationSpec,
    SecretRef,
    parse_spec,
    revision_problem,
)

pytestmark = pytest.mark.unit


def body(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRevision": "head",
        "database": {"urlSecretRef": {"name": "umt-db"}},
    }
    spec.update(overrides)
    return spec


def invalid(**overrides: Any) -> str:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(body(**overrides))
    return str(caught.value)


def test_minimal_spec_gets_the_crd_defaults() -> None:
    assert parse_spec(body()) == MigrationSpec(
        target_revision="head",
        database=SecretRef(name="umt-db", key="url"),
        allow_downgrade=False,
        image=None,
        image_pull_policy=None,
        alembic_config=None,
        job=JobOptions(),
    )


def test_every_field_is_read() -> None:
    job = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 60,
        "serviceAccountName": "migrator",
        "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": 1}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
        "podLabels": {"team": "marketing"},
        "podAnnotations": {"note": "x"},
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
    }
    spec = parse_spec(
        body(
            targetRevision="3f2a9c1e7b42",
            allowDowngrade=True,
            database={"urlSecretRef": {"name": "db", "key": "dsn"}},
            image="registry/umt:1.4.0",
            imagePullPolicy="Always",
            alembic={"config": "/srv/alembic.ini", "workingDir": "/srv"},
            job=job,
        )
    )
    assert spec.target_revision == "3f2a9c1e7b42"
    assert spec.allow_downgrade is True
    assert spec.database == SecretRef("db", "dsn")
    assert (spec.image, spec.image_pull_policy) == ("registry/umt:1.4.0", "Always")
    assert spec.alembic_config == "/srv/alembic.ini"
    assert spec.alembic_working_dir == "/srv"
    assert spec.job == JobOptions(
        backoff_limit=0,
        active_deadline_seconds=600,
        ttl_seconds_after_finished=60,
        service_account_name="migrator",
        resources={"requests": {"cpu": 1}, "limits": {"memory": "1Gi"}},
        node_selector={"kubernetes.io/os": "linux"},
        tolerations=[{"key": "dedicated", "operator": "Exists"}],
        pod_labels={"team": "marketing"},
        pod_annotations={"note": "x"},
        env=[{"name": "LOG_LEVEL", "value": "debug"}],
    )


def test_parsed_spec_does_not_share_the_body() -> None:
    source = {"secretKeyRef": {"name": "s", "key": "k"}}
    env = [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": source}]
    raw = body(job={"env": env, "podLabels": {"a": "b"}})
    spec = parse_spec(raw)
    raw["job"]["env"][0]["value"] = "changed"
    raw["job"]["env"][1]["valueFrom"]["secretKeyRef"]["name"] = "changed"
    raw["job"]["podLabels"]["a"] = "changed"
    assert spec.job.env == [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    assert spec.job.pod_labels == {"a": "b"}


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_valid_targets(case: TargetCase) -> None:
    assert revision_problem(case.target) is None, case.why
    assert parse_spec(body(targetRevision=case.target)).target_revision == case.target


@pytest.mark.parametrize("case", RELATIVE, ids=str)
def test_relative_targets_are_refused(case: TargetCase) -> None:
    assert invalid(targetRevision=case.target) == RELATIVE_REVISION_MESSAGE, case.why


@pytest.mark.parametrize("case", [c for c in MALFORMED if c.target], ids=str)
def test_malformed_targets_are_refused(case: TargetCase) -> None:
    assert invalid(targetRevision=case.target) == REVISION_FORMAT_MESSAGE, case.why


@pytest.mark.parametrize("target", [None, "", 42])
def test_target_is_required(target: Any) -> None:
    assert "targetRevision is required" in invalid(targetRevision=target)


def test_missing_target_key() -> None:
    with pytest.raises(InvalidSpec, match="targetRevision is required"):
        parse_spec({"database": {"urlSecretRef": {"name": "umt-db"}}})


def test_overlong_target() -> None:
    assert "at most 128 characters" in invalid(targetRevision="a" * 129)


@pytest.mark.parametrize("spec", [None, {}, {"targetRevision": "head"}])
def test_missing_database_is_explained(spec: Any) -> None:
    with pytest.raises(InvalidSpec, match=r"database.urlSecretRef is required"):
        parse_spec(spec)


@pytest.mark.parametrize("name", ["", "UMT", "umt_db", "-x", None, "a" * 254, "db\n"])
def test_bad_secret_name(name: Any) -> None:
    assert invalid(database={"urlSecretRef": {"name": name}}) == SECRET_NAME_MESSAGE


@pytest.mark.parametrize("key", ["", "a/b", None, "url\n"])
def test_bad_secret_key(key: Any) -> None:
    assert invalid(database={"urlSecretRef": {"name": "db", "key": key}}) == SECRET_KEY_MESSAGE


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("backoffLimit", 99, "job.backoffLimit must be an integer between 0 and 10, got 99"),
        ("backoffLimit", -1, "job.backoffLimit must be an integer between 0 and 10, got -1"),
        ("backoffLimit", "2", "job.backoffLimit must be an integer between 0 and 10, got '2'"),
        ("backoffLimit", True, "job.backoffLimit must be an integer between 0 and 10, got True"),
        ("activeDeadlineSeconds", 0, "job.activeDeadlineSeconds must be an integer between 1 and"),
        ("ttlSecondsAfterFinished", 10**7, "job.ttlSecondsAfterFinished must be an integer"),
    ],
)
def test_job_ranges(field: str, value: Any, expected: str) -> None:
    assert invalid(job={field: value}).startswith(expected)


@pytest.mark.parametrize("name", ["DATABASE_URL", "TERMINATION_MESSAGE_PATH"])
def test_reserved_env_names(name: str) -> None:
    assert invalid(job={"env": [{"name": name, "value": "x"}]}) == RESERVED_ENV_MESSAGE


def test_env_entries_need_a_name_and_one_source() -> None:
    message = invalid(job={"env": [{"value": "x"}, {"name": "B", "value": "1", "valueFrom": {}}]})
    assert message == (
        "job.env: every entry needs a name; job.env: 'B' takes either value or valueFrom, not both"
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"allowDowngrade": "yes"}, "allowDowngrade must be true or false"),
        ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy must be one of Always, IfNotPresent"),
        ({"image": 3}, "image must be a string"),
        ({"alembic": "x.ini"}, "alembic must be an object"),
        ({"alembic": {"config": 1}}, "alembic.config must be a string"),
        ({"alembic": {"workingDir": 1}}, "alembic.workingDir must be a string"),
        ({"alembic": {"workingDir": "srv/app"}}, WORKING_DIR_MESSAGE),
        ({"job": []}, "job must be an object"),
        ({"database": {"urlSecretRef": "db"}}, "database.urlSecretRef is required"),
        ({"job": {"env": [{"name": "A"}, "B=1"]}}, "job.env must be a list of objects"),
        ({"job": {"nodeSelector": {"a": 1}}}, "job.nodeSelector must map strings to strings"),
        ({"job": {"tolerations": "all"}}, "job.tolerations must be a list of objects"),
        ({"job": {"resources": "big"}}, "job.resources must be an object"),
        ({"job": {"resources": {"limit": {}}}}, "job.resources must be an object"),
        ({"job": {"resources": {"limits": []}}}, "job.resources.limits must map resource"),
        ({"job": {"resources": {"limits": {"memory": "1 GB"}}}},
         "job.resources.limits.memory: '1 GB' is not a quantity"),
        ({"job": {"serviceAccountName": 5}}, "job.serviceAccountName must be a string"),
        ({"job": {"podLabels": {"team": "not valid!"}}}, "value of 'team' is not a valid label"),
        ({"job": {"podLabels": {"bad key!": "x"}}}, "'bad key!' is not a valid label key"),
        ({"job": {"podLabels": {"a": "x" * 64}}}, "value of 'a' is not a valid label value"),
    ],
)
def test_type_and_format_problems(overrides: dict[str, Any], expected: str) -> None:
    assert expected in invalid(**overrides)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec({"targetRevision": "head-1", "job": {"backoffLimit": 11}})
    message = str(caught.value)
    assert RELATIVE_REVISION_MESSAGE in message
    assert "database.urlSecretRef is required" in message
    assert message.endswith("job.backoffLimit must be an integer between 0 and 10, got 11")


def test_patterns_match_whole_strings() -> None:
    """Finding 8 (issue 13): `$` also matches before a final newline, so `re.search` let
    `db\n` through; every pattern is matched against the whole string."""
    for spec in ({"job": {"podLabels": {"team\n": "m"}}}, {"job": {"podLabels": {"team": "m\n"}}},
                 {"job": {"resources": {"limits": {"memory": "1Gi\n"}}}}):
        with pytest.raises(InvalidSpec):
            parse_spec(body(**spec))


def test_prefixed_label_keys_are_accepted() -> None:
    spec = parse_spec(body(job={"podLabels": {"example.com/team": "m", "empty": ""}}))
    assert spec.job.pod_labels == {"example.com/team": "m", "empty": ""}


def test_empty_optional_strings_mean_unset() -> None:
    spec = parse_spec(body(image="", alembic={"config": ""}, job={"serviceAccountName": ""}))
    assert spec.image is None and spec.alembic_config is None
    assert spec.job.service_account_name is None


def test_service_account_and_annotation_keys_are_checked_as_the_api_server_would() -> None:
    """Issue 13, finding 5: a Job with `serviceAccountName: Bad_Name` or a bad annotation key
    is refused (422); with an old CRD the operator says so itself (InvalidSpec)."""
    with pytest.raises(InvalidSpec, match=r"job\.serviceAccountName must be a ServiceAccount"):
        parse_spec(body(job={"serviceAccountName": "Bad_Name"}))
    with pytest.raises(InvalidSpec, match="not a valid annotation key"):
        parse_spec(body(job={"podAnnotations": {"bad key": "x"}}))
    spec = parse_spec(body(job={"serviceAccountName": "umt-migrator",
                                "podAnnotations": {"example.com/owner": "team"}}))
    assert spec.job.service_account_name == "umt-migrator"
