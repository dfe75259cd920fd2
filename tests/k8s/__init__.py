"""Kubernetes stand-ins for integration tests, no cluster needed.

- `Emulator`: an API server (kmock-based) on a localhost port, in its own thread, with a
  kubeconfig for `kubectl`/`helm`, a `kubernetes` client factory, and a blocking API for tests
  (`create/get/list/patch/patch_status/delete/history/wait_for/wait_for_object`).
- `FakeKubelet`: plays the Job controller and the kubelet; runs pods as local processes.
- `run_kopf`: runs a `kopf.OperatorRegistry` against the emulator in its own thread.
- `tests.k8s.fixtures`: the pytest fixtures (`emulator`, `kubelet`, `kubectl`, `k8s_api`,
  `kopf_operator`, `helm_binary`, `kubectl_binary`).
"""

from tests.k8s.apimachinery import ApiError
from tests.k8s.emulator import (
    CONFIGMAPS,
    CRDS,
    EVENTS,
    JOBS,
    PODS,
    SCHEMA_MIGRATIONS,
    SECRETS,
    Emulator,
)
from tests.k8s.kopf_runner import KopfThread, run_kopf
from tests.k8s.kubelet import ContainerRun, FakeKubelet

__all__ = [
    "CONFIGMAPS",
    "CRDS",
    "EVENTS",
    "JOBS",
    "PODS",
    "SCHEMA_MIGRATIONS",
    "SECRETS",
    "ApiError",
    "ContainerRun",
    "Emulator",
    "FakeKubelet",
    "KopfThread",
    "run_kopf",
]
