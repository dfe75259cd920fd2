"""The operator's Deployment and RBAC: least privilege, restricted pod security."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy" / "operator.yaml").read_text())}


def test_rbac_grants_exactly_what_the_operator_calls() -> None:
    rules = {
        (group, resource): sorted(rule["verbs"])
        for rule in DOCS["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("migrations.umt.dev", "schemamigrations"): ["get", "list", "watch"],
        ("migrations.umt.dev", "schemamigrations/status"): ["get", "patch"],
        ("batch", "jobs"): ["create", "get", "list", "watch"],
        ("", "pods"): ["list"],
        ("", "events"): ["create"],
    }
    assert not any("secrets" in key[1] or "*" in verbs for key, verbs in rules.items())


def test_operator_pod_is_restricted() -> None:
    pod = DOCS["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["command"] == ["python", "-m", "umt_operator"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert DOCS["Namespace"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
