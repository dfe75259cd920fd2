"""spec.safety: the CRD, the spec parser, the operator's defaults and the runner's options agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from umt_migrations.cli import build_parser
from umt_operator.jobs import runner_args, safety_args
from umt_operator.settings import Settings, SettingsError
from umt_operator.spec import (
    CONNECT_TIMEOUT_SECONDS_RANGE,
    LOCK_RETRIES_RANGE,
    TIMEOUT_MILLISECONDS_RANGE,
    InvalidSpec,
    parse_spec,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BASE = {"targetRevision": "head", "database": {"urlSecretRef": {"name": "umt-db"}}}


class Field(NamedTuple):
    field: str  #: in spec.safety and the charts' values
    attr: str  #: of Settings
    variable: str
    option: str  #: of `umt-migrations migrate`
    value: tuple[int, str]  #: a value, and the option's text for it
    bounds: tuple[int, int]


FIELDS = [Field(*row) for row in [
    ("stepLockTimeoutMilliseconds", "step_lock_timeout_milliseconds",
     "UMT_OPERATOR_STEP_LOCK_TIMEOUT_MILLISECONDS", "--step-lock-timeout", (500, "0.5"),
     TIMEOUT_MILLISECONDS_RANGE),
    ("statementTimeoutMilliseconds", "statement_timeout_milliseconds",
     "UMT_OPERATOR_STATEMENT_TIMEOUT_MILLISECONDS", "--statement-timeout", (1500, "1.5"),
     TIMEOUT_MILLISECONDS_RANGE),
    ("lockRetries", "lock_retries", "UMT_OPERATOR_LOCK_RETRIES", "--lock-retries", (7, "7"),
     LOCK_RETRIES_RANGE),
    ("connectTimeoutSeconds", "connect_timeout_seconds", "UMT_OPERATOR_CONNECT_TIMEOUT_SECONDS",
     "--connect-timeout", (3, "3"), CONNECT_TIMEOUT_SECONDS_RANGE),
]]


@pytest.fixture(params=FIELDS, ids=[f.field for f in FIELDS])
def case(request: pytest.FixtureRequest) -> Field:
    return request.param  # type: ignore[no-any-return]


def spec_with(**safety: Any) -> Any:
    return parse_spec({**BASE, "safety": safety})


def option_value(args: list[str], option: str) -> str | None:
    return args[args.index(option) + 1] if option in args else None


def test_defaults_pass_no_option_so_older_runners_still_run() -> None:
    assert safety_args(parse_spec(BASE), Settings()) == []


def test_spec_field_becomes_the_runner_option(case: Field) -> None:
    field, _attr, _variable, option, value, _bounds = case
    args = safety_args(spec_with(**{field: value[0]}), Settings())
    assert args == [option, value[1]]


def test_operator_default_applies_and_the_spec_wins(case: Field) -> None:
    field, attr, variable, option, value, bounds = case
    settings = Settings.from_env({variable: str(value[0])})
    assert getattr(settings, attr) == value[0]
    assert safety_args(parse_spec(BASE), settings) == [option, value[1]]
    low = bounds[0] if bounds[0] != value[0] else bounds[0] + 1
    spec_args = safety_args(spec_with(**{field: low}), settings)
    expected = f"{low / 1000:g}" if "Milliseconds" in field else str(low)
    assert option_value(spec_args, option) in (expected, None)  # None: the runner's default


def test_out_of_range_is_refused_naming_the_field_and_the_variable(case: Field) -> None:
    field, _attr, variable, _option, _value, bounds = case
    for bad in (bounds[0] - 1, bounds[1] + 1, "2s", True):
        with pytest.raises(InvalidSpec, match=rf"safety\.{field} must be an integer between "
                                              rf"{bounds[0]} and {bounds[1]}"):
            spec_with(**{field: bad})
        with pytest.raises(SettingsError, match=variable):
            Settings.from_env({variable: str(bad)})


def test_zero_timeouts_mean_no_limit_for_the_runner() -> None:
    args = safety_args(spec_with(stepLockTimeoutMilliseconds=0), Settings())
    parsed = build_parser().parse_args(["migrate", "--to", "head", *args])
    assert parsed.step_lock_timeout == 0  # the runner's "off" (no lock_timeout is set)


def test_the_runner_accepts_every_rendered_option() -> None:
    spec = spec_with(stepLockTimeoutMilliseconds=1, statementTimeoutMilliseconds=86_400_000,
                     lockRetries=100, connectTimeoutSeconds=600)
    parsed = build_parser().parse_args(runner_args(spec, Settings()))
    assert (parsed.step_lock_timeout, parsed.statement_timeout, parsed.lock_retries,
            parsed.connect_timeout) == (0.001, 86400.0, 100, 600.0)


def _crd_safety() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / "schemamigrations.migrations.umt.dev.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    safety: dict[str, Any] = schema["properties"]["spec"]["properties"]["safety"]
    return safety


def test_crd_rule_has_the_spec_bounds_and_a_description(case: Field) -> None:
    field, _attr, _variable, _option, _value, bounds = case
    prop = _crd_safety()["properties"][field]
    assert prop["type"] == "integer"
    assert len(prop["description"]) > 40  # kubectl explain prints it
    (rule,) = prop["x-kubernetes-validations"]
    assert rule["rule"] == f"self >= {bounds[0]} && self <= {bounds[1]}"
    assert f"safety.{field} must be between {bounds[0]}" in " ".join(rule["message"].split())


def test_operator_chart_value_sets_the_variable_with_the_same_bounds(case: Field) -> None:
    field, attr, variable, _option, _value, bounds = case
    import json

    chart = REPO / "charts" / "umt-migrations-operator"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["safety"][field] == getattr(Settings(), attr)
    schema = json.loads((chart / "values.schema.json").read_text())["properties"]["safety"]
    assert (schema["properties"][field]["minimum"], schema["properties"][field]["maximum"]) \
        == bounds
    deployment = (chart / "templates" / "deployment.yaml").read_text()
    assert f"- name: {variable}\n              value: {{{{ .Values.safety.{field} | quote }}}}" \
        in deployment
    sub = json.loads((REPO / "charts" / "schema-migration" / "values.schema.json").read_text())
    sub_field = sub["properties"]["safety"]["properties"][field]
    assert (sub_field["minimum"], sub_field["maximum"]) == bounds
