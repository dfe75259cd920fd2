"""The image as it ships, built from the Dockerfile by the suite and tried in a container.

Everything runs inside the built image (`buildah run`, host network, a tmpfs on /tmp as a pod's
emptyDir would be): the user, a real migration of a fresh PostgreSQL database, the operator's
start without a cluster, the runtime virtualenv's contents, and that nothing is written outside
/tmp. The image's size and what dominates it are printed on every run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from tests.conftest import REPO_ROOT, DatabaseFactory
from tests.image.conftest import BuiltImage, Container, buildah

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HEADS = set(ScriptDirectory(str(REPO_ROOT / "migrations")).get_heads())
BUILD_TOOLS = {"pip", "setuptools", "wheel", "hatchling", "build", "flit-core", "poetry-core",
               "distlib", "virtualenv"}
RUNTIME = {"umt-migrations", "alembic", "sqlalchemy", "psycopg2-binary", "pymysql", "lightkube",
           "kopf", "prometheus-client"}
#: Today about 109 MB: 77 MB before the review step, plus squawk's binary (24 MB) and sqlglot
#: that `plan` and `lint` run in the plan Job; see docs/image.md for what it is made of.
VENV_LIMIT_MB = 120
TRACEBACK = "Traceback (most recent call last)"


def plain_url(url: str) -> str:
    """The URL as people write it (``postgresql://…``), not the test's driver-qualified one."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_revisions(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_operator(container: Container, user: str | None = None):
    """``python -m umt_operator`` with no cluster credentials (HOME is the empty /tmp)."""
    env = {"UMT_OPERATOR_HEALTH_PORT": str(free_port()), "UMT_OPERATOR_METRICS_PORT": "0"}
    return container.run("python", "-m", "umt_operator", env=env, user=user, timeout=90)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runs_as_uid_10001(container: Container, image: BuiltImage) -> None:
    proc = container.run("id", "-u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10001"
    config = container.run("sh", "-c", "echo $HOME; pwd")
    assert config.stdout.split() == ["/tmp", "/app"]
    inspect = buildah("inspect", "--type", "image", "--format", "{{.OCIv1.Config.User}}",
                      image.image_id)
    user = subprocess.run(inspect, capture_output=True, text=True, check=True).stdout.strip()
    assert user == "10001:10001"  # what a runtime (Docker, Kubernetes) starts the image as


def test_migrate_brings_a_fresh_postgresql_database_to_head(container: Container,
                                                           pg_url: str) -> None:
    proc = container.run("umt-migrations", "migrate", "--to", "head", "--url", plain_url(pg_url))
    assert proc.returncode == 0, proc.stderr
    assert database_revisions(pg_url) == HEADS
    current = container.run("umt-migrations", "current", "--url", plain_url(pg_url))
    assert current.returncode == 0, current.stderr
    assert all(f"{head} (head)" in current.stdout for head in HEADS), current.stdout


def test_operator_starts_and_fails_cleanly_without_cluster_credentials(
        container: Container) -> None:
    proc = run_operator(container)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "no Kubernetes credentials" in output
    assert TRACEBACK not in output


def test_the_helm_hook_waiter_and_its_client_are_in_the_image(container: Container) -> None:
    client = container.run("python", "-c", "import lightkube.core.client")
    assert client.returncode == 0, client.stderr
    for command in ("apply", "wait-for-schema"):
        proc = container.run("umt-migrations", command, "--help")
        assert proc.returncode == 0, proc.stderr


def test_runtime_venv_has_no_build_tools(container: Container) -> None:
    listing = ("import importlib.metadata as m, sys; print(sys.prefix); "
               "print(*sorted({d.metadata['Name'] for d in m.distributions()}), sep='\\n')")
    proc = container.run("python", "-c", listing)
    assert proc.returncode == 0, proc.stderr
    prefix, *names = proc.stdout.split()
    installed = {normalise(name) for name in names}
    assert prefix == "/opt/venv"
    assert installed >= RUNTIME, RUNTIME - installed
    assert not installed & BUILD_TOOLS
    scripts = container.run("ls", "/opt/venv/bin").stdout.split()
    assert not [s for s in scripts if re.match(r"(pip|easy_install|wheel|hatch)", s)], scripts
    pip = container.run("python", "-m", "pip", "--version")
    assert pip.returncode != 0 and "No module named pip" in pip.stderr


#: `buildah run` itself creates and removes /run/.containerenv on every run: the directory's
#: modification time is not ours to explain (what is in it still is).
BUILDAH_TOUCHES = {"/run"}


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path of a root filesystem with its mode, owner, size and modification time.

    A directory's modification time changes when an entry is created or removed in it, so even
    a file written then deleted shows up.
    """
    seen: dict[str, tuple[int, int, int, int]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            relative = path[len(str(root)):]
            st = os.lstat(path)
            mtime = 0 if relative in BUILDAH_TOUCHES else st.st_mtime_ns
            seen[relative] = (st.st_mode, st.st_uid, st.st_size, mtime)
    return seen


def changes(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]) -> list[str]:
    return sorted(path for path in before.keys() | after.keys()
                  if before.get(path) != after.get(path))


def test_nothing_is_written_outside_tmp(new_container: Callable[[], Container],
                                        pg_factory: DatabaseFactory) -> None:
    """The CLI and the operator leave the root filesystem as they found it.

    Run as the image's user and again as root, so that file permissions cannot hide an attempt
    to write (a read-only root filesystem would make it fail). Writes to /tmp go to a tmpfs.
    """
    container = new_container()
    assert container.run("true").returncode == 0  # buildah's own mount points, made once
    root = container.mount()
    before = snapshot(root)
    for user in (None, "0:0"):
        url = plain_url(pg_factory.create())
        migrate = container.run("umt-migrations", "migrate", "--to", "head", "--url", url,
                                "--report", "/tmp/report.json", user=user)
        assert migrate.returncode == 0, migrate.stderr
        current = container.run("umt-migrations", "current", "--url", url, user=user)
        assert current.returncode == 0, current.stderr
        assert run_operator(container, user=user).returncode != 0
    after = snapshot(root)
    assert changes(before, after) == []
    # ...and the comparison does see a write outside /tmp when there is one.
    assert container.run("sh", "-c", "echo probe > /var/tmp/umt-probe").returncode == 0
    assert "/var/tmp/umt-probe" in changes(after, snapshot(root))


def test_image_size_and_what_dominates_it(container: Container, image: BuiltImage,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    proc = container.run(
        "sh", "-c", "du -sk /opt/venv /app && du -sk /opt/venv/lib/python3*/site-packages/*")
    assert proc.returncode == 0, proc.stderr
    sizes = {Path(path).name: int(kb) for kb, path in
             (line.split("\t") for line in proc.stdout.splitlines())}
    venv_mb = sizes.pop("venv") / 1024
    app_kb = sizes.pop("app")
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    with capsys.disabled():
        print(f"\n{image.summary}\nruntime venv {venv_mb:.0f} MB, /app {app_kb} kB; largest: "
              + ", ".join(f"{name} {kb / 1024:.1f} MB" for name, kb in largest))
    assert venv_mb < VENV_LIMIT_MB
