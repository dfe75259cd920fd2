"""In-cluster login as client-go's `rest.InClusterConfig()` does it: the service variables first."""

from __future__ import annotations

from pathlib import Path

import pytest

from umt_operator.login import FALLBACK_SERVER, api_server, in_cluster

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("environ", "server"),
    [
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
         "https://10.96.0.1:443"),
        ({"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "6443"},
         "https://[fd00:10:96::1]:6443"),
        ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, FALLBACK_SERVER),
        ({}, FALLBACK_SERVER),
    ],
)
def test_api_server_from_the_service_variables(environ: dict[str, str], server: str) -> None:
    assert api_server(environ) == server


def service_account(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("eyJhbGciOi.token\n")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "namespace").write_text("umt-system")
    return tmp_path


def test_in_cluster_uses_the_pod_service_account(tmp_path: Path) -> None:
    info = in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                      service_account(tmp_path))
    assert info is not None
    assert info.server == "https://10.0.0.1:443"
    assert info.token == "eyJhbGciOi.token" and info.scheme == "Bearer"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert info.default_namespace == "umt-system"


def test_in_cluster_without_dns_needs_no_service_name(tmp_path: Path) -> None:
    info = in_cluster({"KUBERNETES_SERVICE_HOST": "172.20.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                      service_account(tmp_path))
    assert info is not None and "kubernetes.default.svc" not in info.server


def test_outside_a_pod_there_is_no_in_cluster_login(tmp_path: Path) -> None:
    assert in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                      tmp_path / "absent") is None


@pytest.mark.parametrize("content", [None, "not: [yaml"])
def test_a_missing_or_broken_kubeconfig_stops_with_its_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None) -> None:
    import logging

    import kopf

    from umt_operator.login import connect

    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr("umt_operator.login.in_cluster", lambda: None)
    with pytest.raises(kopf.PermanentError, match=f"cannot read the kubeconfig {path}: "):
        connect(kopf.OperatorSettings(), logging.getLogger("test"))
