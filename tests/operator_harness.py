"""The operator under test: kopf in-process against the API emulator, with the fake kubelet
running Jobs as real ``umt-migrations migrate`` processes; fixtures (a pytest plugin, listed in
``tests/conftest.py``) and the helpers the operator tests share.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import sqlalchemy as sa

from tests.conftest import REPO_ROOT
from tests.k8s.emulator import EVENTS, JOBS, SCHEMA_MIGRATIONS, SECRETS, Emulator
from tests.k8s.kubelet import FakeKubelet

NS = "default"
REVISIONS = sorted((REPO_ROOT / "migrations" / "versions").glob("*.py"))
REVISION_IDS = [re.search(r"-([0-9a-f]{12})_", p.name).group(1) for p in REVISIONS]
HEAD = REVISION_IDS[-1]
TIMEOUT = 60


OLD_IMAGE, NEW_IMAGE = "registry.example/umt:1.0.0", "registry.example/umt:2.0.0"


def two_releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The runner as a local process; two "images": 2.0.0 is this repository, 1.0.0 a copy
    that knows only the first two revisions (an older release)."""
    old_release = tmp_path_factory.mktemp("release-1.0.0")
    shutil.copy(REPO_ROOT / "alembic.ini", old_release)
    shutil.copytree(REPO_ROOT / "migrations", old_release / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__", *[p.name for p in REVISIONS[2:]]))
    return {"command_map": {"umt-migrations": [sys.executable, "-m", "umt_migrations"]},
            "cwd": str(REPO_ROOT),
            "image_path_map": {OLD_IMAGE: {"/app": old_release}, NEW_IMAGE: {"/app": REPO_ROOT}}}


@pytest.fixture
def registry() -> kopf.OperatorRegistry:
    import umt_operator.handlers  # noqa: F401  (registers into the default registry)

    return kopf.get_default_registry()


@pytest.fixture
def settings() -> Any:
    from umt_operator.settings import Settings

    return Settings.from_env({
        "UMT_OPERATOR_DEFAULT_IMAGE": "registry.example/umt:2.0.0",
        "UMT_OPERATOR_LOCK_TIMEOUT_SECONDS": "60",
        "UMT_OPERATOR_METRICS_PORT": "0",
        "UMT_OPERATOR_JOB_BACKOFF_LIMIT": "1",
    })


class Operator:
    """Starts and stops the real operator against the test's emulator."""

    def __init__(self, emulator: Emulator, start: Any, registry: Any, settings: Any,
                 namespaces: tuple[str, ...] = (NS,)) -> None:
        from umt_operator.metrics import Metrics

        self.emulator, self._start = emulator, start
        self.registry, self.settings = registry, settings
        self.namespaces = list(namespaces)
        self.metrics = Metrics()
        self._running: Any = None

    def start(self) -> None:
        memo = kopf.Memo(settings=self.settings, metrics=self.metrics,
                         connection=kopf.ConnectionInfo(server=self.emulator.url))
        self._running = self._start(self.registry, self.namespaces, memo=memo)
        self._running.__enter__()

    def stop(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            running.__exit__(None, None, None)


@pytest.fixture
def operator(emulator: Emulator, kopf_operator: Any, registry: Any, settings: Any,
             kubelet: FakeKubelet) -> Iterator[Operator]:
    op = Operator(emulator, kopf_operator, registry, settings)
    op.start()
    yield op
    op.stop()


def add_secret(emulator: Emulator, url: str, name: str = "umt-db") -> None:
    emulator.create(SECRETS, NS, {"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": name}, "stringData": {"url": url}})


def add_migration(emulator: Emulator, name: str = "umt-schema", **spec: Any) -> dict:
    body = {"apiVersion": "migrations.umt.dev/v1alpha1", "kind": "SchemaMigration",
            "metadata": {"name": name},
            "spec": {"targetRevision": "head",
                     "database": {"urlSecretRef": {"name": "umt-db", "key": "url"}}, **spec}}
    return emulator.create(SCHEMA_MIGRATIONS, NS, body)


def condition(obj: dict | None, type_: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}


def wait_condition(emulator: Emulator, name: str, type_: str, reason: str | None = None,
                   generation: int | None = None, timeout: float = TIMEOUT) -> dict:
    """Wait until condition ``type_`` is True for the object's current generation."""
    def check() -> dict | None:
        obj = emulator.get(SCHEMA_MIGRATIONS, NS, name)
        cond = condition(obj, type_)
        gen = generation or (obj or {}).get("metadata", {}).get("generation")
        if cond.get("status") == "True" and cond.get("observedGeneration") == gen \
                and (reason is None or cond.get("reason") == reason):
            return obj
        return None
    return emulator.wait_for(check, timeout=timeout, message=f"{name} {type_} {reason or ''}")


def jobs_of(emulator: Emulator, name: str) -> list[dict]:
    return [j for j in emulator.list(JOBS, NS)
            if j["metadata"].get("annotations", {}).get("migrations.umt.dev/owner")
            == f"{NS}/{name}"]


def db_revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def wait_message(emulator: Emulator, name: str, text: str, timeout: float = TIMEOUT) -> dict:
    """Wait until the resource's status message contains ``text``; return the resource."""
    return emulator.wait_for_object(
        SCHEMA_MIGRATIONS, NS, name,
        lambda obj: text in str((obj.get("status") or {}).get("message")), timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def event_reasons(emulator: Emulator, name: str) -> list[str]:
    return [e.get("reason") for e in emulator.list(EVENTS, NS)
            if (e.get("involvedObject") or {}).get("name") == name]
