"""Fixtures of the e2e suite: the cluster, the databases, and the chart installed with helm.

The chart is installed once per run, as a platform team would: `helm install` of
charts/umt-migrations-operator into a namespace of its own (restricted Pod Security),
watching one application namespace and another tenant's (both restricted), so the real
apiserver enforces the chart's namespaced RBAC and the pods' security settings. Everything
the run created is removed at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import CHART, Cluster, Databases, Target, configured_target, kind_target

RELEASE = "umt-migrations-operator"  # the chart's name: object names and the Lease name
CRD = "schemamigrations.migrations.umt.dev"


class Installation:
    """The operator installed with helm, and where the tests put their resources."""

    def __init__(self, cluster: Cluster, target: Target, databases: Databases) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.cluster, self.target, self.databases = cluster, target, databases
        self.system = f"umt-e2e-system-{suffix}"
        self.apps = f"umt-e2e-apps-{suffix}"
        #: Another tenant's namespace, watched too: nothing there may change `apps`.
        self.other = f"umt-e2e-other-{suffix}"
        self.installed = False
        self.crd_created = False

    @property
    def values(self) -> list[str]:
        return ["--set", f"image.repository={self.target.repository}",
                "--set", f"image.tag={self.target.tag}",
                "--set", "image.pullPolicy=IfNotPresent",
                "--set", "runner.defaultImagePullPolicy=IfNotPresent",
                "--set", f"watchNamespaces={{{self.apps},{self.other}}}",
                "--set", f"crds.install={str(self.crd_created).lower()}"]

    def install(self) -> None:
        for namespace in (self.system, self.apps, self.other):
            self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": namespace,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
        # The CRD belongs to one release per cluster: install it only where nobody has.
        self.crd_created = self.cluster.get("crd", CRD) is None
        self.cluster.helm("install", RELEASE, str(CHART), "--namespace", self.system,
                          *self.values, "--wait", "--timeout", "5m", timeout=420)
        self.installed = True
        self.cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD}",
                             "--timeout=60s")

    def upgrade(self, *values: str) -> None:
        self.cluster.helm("upgrade", RELEASE, str(CHART), "--namespace", self.system,
                          "--reuse-values", *values, "--wait", "--timeout", "5m", timeout=420)

    def uninstall(self) -> None:
        if self.installed:
            self.cluster.helm("uninstall", RELEASE, "--namespace", self.system, "--wait",
                              "--timeout", "5m", timeout=420)
            self.installed = False

    def cleanup(self) -> None:
        with contextlib.suppress(AssertionError):
            self.uninstall()
        for namespace in (self.apps, self.other, self.system):
            self.cluster.kubectl("delete", "namespace", namespace, "--wait=false",
                                 "--ignore-not-found", check=False)
        if self.crd_created:
            self.cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=false",
                                 check=False)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory,
           kubectl_binary: Path) -> Iterator[Target]:
    try:
        given = configured_target()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if given is not None:
        yield given
        return
    try:
        with kind_target(tmp_path_factory.mktemp("kind"), kubectl_binary) as made:
            yield made
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def cluster(target: Target, kubectl_binary: Path, helm_binary: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    cluster = Cluster(target.kubeconfig, kubectl_binary, helm_binary,
                      tmp_path_factory.mktemp("helm"))
    cluster.kubectl("version")  # reachable, with these credentials
    return cluster


@pytest.fixture(scope="session")
def databases(target: Target) -> Iterator[Databases]:
    found = Databases(target.database_url, target.admin_url)
    yield found
    found.drop_all()


@pytest.fixture(scope="session")
def operator(cluster: Cluster, target: Target, databases: Databases) -> Iterator[Installation]:
    installation = Installation(cluster, target, databases)
    try:
        installation.install()
        yield installation
    finally:
        installation.cleanup()
