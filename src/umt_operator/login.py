"""How the operator finds the Kubernetes API: in a pod, else from a kubeconfig.

In a pod, the API server's address comes from ``KUBERNETES_SERVICE_HOST`` and
``KUBERNETES_SERVICE_PORT``, which the kubelet sets in every container, as client-go's
``rest.InClusterConfig()`` and the official Python client's ``load_incluster_config()`` do; the
name ``kubernetes.default.svc`` (which needs working cluster DNS for the pod) is only the
fallback. The credentials are the pod's service account token and CA bundle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import kopf
import yaml

from umt_operator.settings import SERVICE_ACCOUNT_DIR

FALLBACK_SERVER = "https://kubernetes.default.svc"


def api_server(environ: Mapping[str, str]) -> str:
    """``https://host:port`` from the service variables (IPv6 hosts in brackets)."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip()
    if not host or not port:
        return FALLBACK_SERVER
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # net.JoinHostPort
    return f"https://{host}:{port}"


def in_cluster(
    environ: Mapping[str, str] | None = None, directory: Path = SERVICE_ACCOUNT_DIR
) -> kopf.ConnectionInfo | None:
    """The pod's service account connection, or None outside a pod (no token file)."""
    env = os.environ if environ is None else environ
    token_path = directory / "token"
    try:
        token = token_path.read_text().strip()
    except OSError:
        return None
    ca_path = directory / "ca.crt"
    namespace_path = directory / "namespace"
    namespace = namespace_path.read_text().strip() if namespace_path.is_file() else None
    return kopf.ConnectionInfo(
        server=api_server(env),
        ca_path=str(ca_path) if ca_path.is_file() else None,
        scheme="Bearer",
        token=token,
        default_namespace=namespace or None,
    )


def connect(settings: kopf.OperatorSettings, logger: kopf.Logger) -> kopf.ConnectionInfo:
    """In-cluster service account, else ``KUBECONFIG`` / ``~/.kube/config`` (kopf's reader)."""
    info = in_cluster()
    if info is not None:
        logger.debug("using the pod's service account with %s", info.server)
        return info
    try:
        info = kopf.login_with_kubeconfig(settings=settings, logger=logger)
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        # A missing or broken kubeconfig does not mend itself: say so once and stop.
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise kopf.PermanentError(f"cannot read the kubeconfig {where}: {detail}") from None
    if info is None:
        raise kopf.PermanentError(
            "no Kubernetes credentials: run in a pod with a service account, or set KUBECONFIG"
        )
    return info
