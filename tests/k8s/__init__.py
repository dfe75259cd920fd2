"""Kubernetes stand-ins for integration tests, no cluster needed.

- `Emulator`: an API server (kmock-based) on a localhost port, in its own thread, with a
  kubeconfig for `kubectl`/`helm`, a `kubernetes` client factory, and a blocking API for tests
  (`create/get/list/patch/patch_status/delete/history/wait_for/wait_for_object`).
- `JobController`: the fake Job controller (a pod per Job, the Job's status from its pod's).
- `FakeKubelet`: the fake scheduler and kubelet; runs pods as local processes.
- `run_kopf`: runs a `kopf.OperatorRegistry` against the emulator in its own thread.
- `tests.k8s.fixtures`: the pytest fixtures (`emulator`, `job_controller`, `kubelet`,
  `kubectl`, `k8s_api`, `kopf_operator`, `helm_binary`, `kubectl_binary`), loaded for every
  test by `pytest_plugins` in tests/conftest.py.
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
from tests.k8s.job_controller import JobController
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
    "JobController",
    "KopfThread",
    "run_kopf",
]
