"""spec.review in the CRD: defaults, enums and CEL rules, the same words as the operator's."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.test_crd import CRD_PATH, resource, validate
from umt_operator import review as review_module

DIGEST = "sha256:" + "0f" * 32


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"]
    root: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return root


def errors(schema: dict[str, Any], review: dict[str, Any]) -> list[str]:
    body = resource(review=review)
    return validate(schema, body)


def test_defaults_are_the_operators(schema: dict[str, Any]) -> None:
    body = resource(review={})
    assert validate(schema, body) == []
    assert body["spec"]["review"] == {"lint": "Warn", "approval": "Never", "drift": "Off",
                                      "interval": "1h", "onDrift": "Report"}
    parsed = review_module.parse_review(body["spec"])
    assert parsed == review_module.ReviewSpec()


def test_enums_match_the_operator(schema: dict[str, Any]) -> None:
    props = schema["properties"]["spec"]["properties"]["review"]["properties"]
    assert tuple(props["lint"]["enum"]) == review_module.LINT_MODES
    assert tuple(props["approval"]["enum"]) == review_module.APPROVAL_MODES
    assert tuple(props["drift"]["enum"]) == review_module.DRIFT_MODES
    assert tuple(props["onDrift"]["enum"]) == review_module.ON_DRIFT_MODES


def test_a_full_review_is_accepted(schema: dict[str, Any]) -> None:
    assert errors(schema, {"lint": "Block", "approval": "OnFindings",
                           "approvedPlanDigest": DIGEST, "drift": "Periodic",
                           "interval": "5m", "onDrift": "Fail"}) == []


@pytest.mark.parametrize("digest", ["sha256:" + "0F" * 32, "0f" * 32, "sha256:abc",
                                    "sha512:" + "0f" * 32])
def test_bad_digest_is_refused_with_the_operators_message(schema: dict[str, Any],
                                                          digest: str) -> None:
    found = errors(schema, {"approvedPlanDigest": digest})
    assert found
    assert any(review_module.DIGEST_MESSAGE in " ".join(e.split()) for e in found) \
        or any("Too long" in e for e in found)


@pytest.mark.parametrize(("interval", "ok"), [("5m", True), ("300s", True), ("1h30m", True),
                                              ("4m59s", False), ("", False), ("10", False),
                                              ("1d", False)])
def test_interval_rule(schema: dict[str, Any], interval: str, ok: bool) -> None:
    found = errors(schema, {"interval": interval})
    assert (found == []) is ok
    if not ok:
        assert any(review_module.INTERVAL_MESSAGE in e for e in found)
    assert (review_module.interval_seconds(interval) or 0) >= 300 if ok else True


@pytest.mark.parametrize("field", ["lint", "approval", "drift", "onDrift"])
def test_unknown_modes_are_refused(schema: dict[str, Any], field: str) -> None:
    assert any("Unsupported value" in e for e in errors(schema, {field: "Sometimes"}))
