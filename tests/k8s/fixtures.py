"""pytest fixtures for tests that need the emulated cluster.

The root conftest loads them as a plugin (`pytest_plugins = ["tests.k8s.fixtures"]`): any test
asks for them by name. Every test gets a fresh emulator with the CRDs of `crds/` registered,
so discovery, printer columns, schema defaults and validation match the real CRD.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.emulator import Emulator
from tests.k8s.job_controller import JobController
from tests.k8s.kopf_runner import run_kopf
from tests.k8s.kubelet import FakeKubelet

__all__ = [
    "emulator",
    "helm_binary",
    "job_controller",
    "job_controller_options",
    "k8s_api",
    "kopf_operator",
    "kubectl",
    "kubectl_binary",
    "kubelet",
    "kubelet_options",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
FETCH_TOOLS = REPO_ROOT / "scripts" / "fetch-k8s-tools.sh"


def register_repo_crds(cluster: Emulator, crd_dir: Path = CRD_DIR) -> None:
    for path in sorted(crd_dir.glob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                cluster.register_crd(document)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulated cluster (API server on a localhost port) with the repo's CRDs."""
    with Emulator() as cluster:
        register_repo_crds(cluster)
        yield cluster


#: The image keeps the project in /app (alembic.ini, migrations/): locally, that is the repo.
IMAGE_PATHS = {"/app": REPO_ROOT}


@pytest.fixture
def job_controller_options() -> dict[str, Any]:
    """Override (or parametrize) to configure the fake Job controller: `retry_delay`,
    `create_backoff`, `max_create_backoff`."""
    return {}


@pytest.fixture
def job_controller(emulator: Emulator,
                   job_controller_options: dict[str, Any]) -> Iterator[JobController]:
    """The fake Job controller: a pod per Job, the Job's status from its pod's."""
    controller = JobController(emulator, **job_controller_options).start()
    yield controller
    controller.stop()


@pytest.fixture
def kubelet_options() -> dict[str, Any]:
    """Override (or parametrize) to configure the fake kubelet: `command_map`, `path_map`,
    `cwd`, `extra_env`, `unpullable`, `node_images`..."""
    return {}


@pytest.fixture
def kubelet(emulator: Emulator, kubelet_options: dict[str, Any],
            job_controller: JobController) -> Iterator[FakeKubelet]:
    """The fake scheduler and kubelet, running pods as local processes (image paths under
    /app mapped to the repo); with the Job controller, so Jobs run."""
    fake = FakeKubelet(emulator, **{"path_map": IMAGE_PATHS, **kubelet_options}).start()
    yield fake
    fake.stop()


@pytest.fixture
def k8s_api(emulator: Emulator) -> Iterator[Any]:
    """A `kubernetes.client.ApiClient` for the emulator (sync; call it from the test thread
    or through `asyncio.to_thread`)."""
    with emulator.k8s_client() as client:
        yield client


def _tool(name: str) -> Path:
    """The pinned tool `scripts/fetch-k8s-tools.sh` puts in .tools/bin (fetched on first use),
    never whatever is on PATH: the suite's results must not depend on the machine."""
    fetched = subprocess.run([str(FETCH_TOOLS)], check=True, capture_output=True, text=True)
    return Path(fetched.stdout.strip()) / name


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    """The pinned `kubectl` (1.35, from `scripts/fetch-k8s-tools.sh`)."""
    return _tool("kubectl")


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """The pinned `helm` (4.x, from `scripts/fetch-k8s-tools.sh`)."""
    return _tool("helm")


class Kubectl:
    """`kubectl` pointed at one emulator: `kubectl("get", "smig", "-o", "json")`."""

    def __init__(self, binary: Path, cluster: Emulator) -> None:
        self.binary = binary
        self.env = cluster.kubectl_env()

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.binary), *args], input=input, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start kubectl in the background (`wait`, `get -w`); the caller reaps it."""
        return subprocess.Popen([str(self.binary), *args], env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def kubectl(emulator: Emulator, kubectl_binary: Path) -> Kubectl:
    return Kubectl(kubectl_binary, emulator)


@pytest.fixture
def kopf_operator(emulator: Emulator) -> Any:
    """`with kopf_operator(registry, namespaces=["default"], configure=...):` runs kopf
    against this test's emulator (see `tests.k8s.kopf_runner.run_kopf`)."""
    def start(registry: Any, namespaces: Any = ("default",), **kwargs: Any) -> Any:
        return run_kopf(registry, emulator, namespaces, **kwargs)

    return start
