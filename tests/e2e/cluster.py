"""The cluster the e2e suite runs on: any cluster it is given, or a kind cluster it makes.

Any cluster (all four variables):

    UMT_E2E_KUBECONFIG     a kubeconfig; its current context is used
    UMT_E2E_IMAGE          the project's image (repository:tag), already on the nodes: the chart
                           runs it with imagePullPolicy IfNotPresent, never pulls it
    UMT_E2E_DATABASE_URL   a PostgreSQL (or MySQL) server as pods reach it; each test creates
                           its own database there (the URL's database is only where it starts)
    UMT_E2E_ADMIN_URL      the same server as this machine reaches it, allowed to create
                           databases; the tests read revisions and hold the migration lock here

kind (``UMT_E2E=1``, what ``make e2e`` sets, and no UMT_E2E_KUBECONFIG): needs ``docker`` and
``kind``; creates a cluster, builds the image and loads it into the nodes, runs PostgreSQL in
the cluster and reaches it through ``kubectl port-forward``. ``UMT_E2E_KEEP=1`` keeps the cluster.

Passwords never reach a command line or a message: Secrets and the PostgreSQL Deployment go to
``kubectl apply -f -`` on stdin, and URLs are shown masked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from umt_migrations.locking import migration_lock
from umt_migrations.masking import mask_url
from umt_migrations.urls import parse_url

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "umt-migrations-operator"
VARIABLES = ("UMT_E2E_KUBECONFIG", "UMT_E2E_IMAGE", "UMT_E2E_DATABASE_URL", "UMT_E2E_ADMIN_URL")
T = TypeVar("T")


def skip_reason() -> str | None:
    """Why the suite does not run here, or None when it is configured (even partly: a
    partial configuration fails, naming what is missing, rather than skipping)."""
    if any(os.environ.get(name) for name in VARIABLES) or os.environ.get("UMT_E2E") == "1":
        return None
    return ("e2e is opt-in: set UMT_E2E_KUBECONFIG, UMT_E2E_IMAGE, UMT_E2E_DATABASE_URL and "
            "UMT_E2E_ADMIN_URL to run on any cluster, or UMT_E2E=1 (make e2e) with Docker "
            "and kind to create a kind cluster")


@dataclasses.dataclass(frozen=True)
class Target:
    kubeconfig: Path
    image: str
    database_url: str = dataclasses.field(repr=False)  # passwords: never in a message
    admin_url: str = dataclasses.field(repr=False)

    @property
    def repository(self) -> str:
        return self.image.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.image.rsplit(":", 1)[1]


def configured_target() -> Target | None:
    """The cluster given by the UMT_E2E_* variables; None in kind mode."""
    if not os.environ.get("UMT_E2E_KUBECONFIG"):
        given = [name for name in VARIABLES if os.environ.get(name)]
        if given and os.environ.get("UMT_E2E") != "1":
            raise RuntimeError(f"{', '.join(given)} set but UMT_E2E_KUBECONFIG is not: set all "
                               f"of {', '.join(VARIABLES)} (or UMT_E2E=1 for kind)")
        return None
    missing = [name for name in VARIABLES if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"UMT_E2E_KUBECONFIG is set; also set {', '.join(missing)}")
    target = Target(Path(os.environ["UMT_E2E_KUBECONFIG"]), os.environ["UMT_E2E_IMAGE"],
                    os.environ["UMT_E2E_DATABASE_URL"], os.environ["UMT_E2E_ADMIN_URL"])
    if not re.fullmatch(r"[^@\s]+:[\w][\w.-]*", target.image) or "/" in target.tag:
        raise RuntimeError(f"UMT_E2E_IMAGE must be repository:tag, got {target.image!r}")
    return target


def run(args: list[str], *, input: str | None = None, check: bool = True, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def eventually(probe: Callable[[], T], timeout: float, what: str, interval: float = 1.0) -> T:
    """Poll something outside this process (the cluster, the database) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {result!r})")
        time.sleep(interval)


class Cluster:
    """kubectl and helm against one kubeconfig."""

    def __init__(self, kubeconfig: Path, kubectl: Path, helm: Path, workdir: Path) -> None:
        self.env = {"KUBECONFIG": str(kubeconfig),
                    "HELM_CACHE_HOME": str(workdir / "helm-cache"),
                    "HELM_CONFIG_HOME": str(workdir / "helm-config"),
                    "HELM_DATA_HOME": str(workdir / "helm-data")}
        self._kubectl, self._helm = str(kubectl), str(helm)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self._kubectl, *args], input=input, check=check, timeout=timeout,
                   env=self.env)

    def helm(self, *args: str, check: bool = True,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run([self._helm, *args], check=check, timeout=timeout, env=self.env)

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed; None when it is not found."""
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {' '.join(args)}: {result.stderr}")
        return json.loads(result.stdout)

    def apply(self, manifest: dict[str, Any], namespace: str | None = None) -> None:
        where = ["-n", namespace] if namespace else []
        self.kubectl(*where, "apply", "-f", "-", input=json.dumps(manifest))

    def create(self, manifest: dict[str, Any], namespace: str | None = None) -> None:
        """`kubectl create -f -`: for Secrets, which `apply` would copy, values included, into
        its last-applied-configuration annotation."""
        where = ["-n", namespace] if namespace else []
        self.kubectl(*where, "create", "-f", "-", input=json.dumps(manifest))


class Databases:
    """Fresh databases on the server under test, seen by pods and by this machine."""

    def __init__(self, pod_url: str, admin_url: str) -> None:
        self.pod_url, self.admin = pod_url, parse_url(admin_url)
        self.dialect = self.admin.get_backend_name()
        self.created: list[str] = []

    def _engine(self, database: str | None = None, **options: Any) -> sa.Engine:
        url = self.admin if database is None else self.admin.set(database=database)
        return sa.create_engine(url, poolclass=sa.pool.NullPool, **options)

    def create(self, prefix: str) -> tuple[str, str]:
        """A new database: (its name, its URL as pods reach it; never print it)."""
        name = f"umt_e2e_{prefix}_{uuid.uuid4().hex[:8]}"
        with self._engine(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        self.created.append(name)
        url = sa.engine.make_url(self.pod_url).set(database=name)
        return name, url.render_as_string(hide_password=False)

    def revision(self, name: str) -> str | None:
        with self._engine(name).connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def tables(self, name: str) -> set[str]:
        with self._engine(name).connect() as conn:
            return set(sa.inspect(conn).get_table_names())

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the runner's own migration lock on database `name`: a Job started meanwhile
        waits inside `migrate`, which is "mid-migration" for the operator."""
        engine = self._engine(name)
        with engine.connect() as conn, migration_lock(conn, timeout=0):
            yield

    def lock_waiters(self, name: str) -> int:
        """Sessions waiting for an advisory lock in database `name` (PostgreSQL)."""
        with self._engine(name).connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )).scalar() or 0)

    def drop_all(self) -> None:
        with self._engine(isolation_level="AUTOCOMMIT").connect() as conn:
            for name in self.created:
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                else:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")

    def __str__(self) -> str:
        return f"{mask_url(self.pod_url)} (from pods), {mask_url(self.admin)} (from here)"


# --- kind ----------------------------------------------------------------------------------

POSTGRES = """
apiVersion: v1
kind: Secret
metadata: {name: postgres}
stringData: {password: %(password)s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          env:
            - name: POSTGRES_PASSWORD
              valueFrom: {secretKeyRef: {name: postgres, key: password}}
          ports: [{containerPort: 5432}]
          readinessProbe:
            exec: {command: [pg_isready, -U, postgres]}
---
apiVersion: v1
kind: Service
metadata: {name: postgres}
spec:
  selector: {app: postgres}
  ports: [{port: 5432}]
"""


@contextlib.contextmanager
def kind_target(workdir: Path, kubectl: Path) -> Iterator[Target]:
    """A kind cluster with the image loaded and PostgreSQL running in it."""
    for tool in ("docker", "kind"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"UMT_E2E=1 without UMT_E2E_KUBECONFIG uses kind, but {tool} "
                               "is not on PATH")
    name = f"umt-e2e-{uuid.uuid4().hex[:6]}"
    image = os.environ.get("UMT_E2E_IMAGE") or "umt-migrations:e2e"
    kubeconfig = workdir / "kind-kubeconfig"
    run(["kind", "create", "cluster", "--name", name, "--kubeconfig", str(kubeconfig),
         "--wait", "180s"], timeout=600)
    forward: subprocess.Popen[str] | None = None
    try:
        run([str(ROOT / "scripts" / "build-image"), "--builder", "docker", "--tag", image],
            timeout=1800)  # as `make image` builds it
        run(["kind", "load", "docker-image", image, "--name", name], timeout=600)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        password = secrets.token_hex(12)
        run([str(kubectl), "create", "namespace", "umt-e2e-db"], env=env)
        run([str(kubectl), "-n", "umt-e2e-db", "create", "-f", "-"],
            input=POSTGRES % {"password": password}, env=env)
        run([str(kubectl), "-n", "umt-e2e-db", "rollout", "status", "deploy/postgres",
             "--timeout=300s"], env=env, timeout=330)
        forward = subprocess.Popen([str(kubectl), "-n", "umt-e2e-db", "port-forward",
                                    "svc/postgres", ":5432"], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:40123 -> 5432"
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        if port is None:
            raise RuntimeError(f"kubectl port-forward said: {line}")
        yield Target(kubeconfig, image,
                     f"postgresql://postgres:{password}@postgres.umt-e2e-db.svc:5432/postgres",
                     f"postgresql://postgres:{password}@127.0.0.1:{port.group(1)}/postgres")
    finally:
        if forward is not None:
            forward.terminate()
            forward.wait(timeout=30)
        if not os.environ.get("UMT_E2E_KEEP"):
            run(["kind", "delete", "cluster", "--name", name], check=False, timeout=300)
