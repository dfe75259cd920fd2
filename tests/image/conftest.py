"""The project's image, built once per test session the way `make image` builds it without Docker.

`scripts/build-image --builder buildah --stand-in-base` builds the Dockerfile daemonless, on a
local stand-in for python:3.11-slim (no container registry is reachable on the test machines;
see docs/image.md). Both the stand-in base and the build steps are cached in buildah's storage,
so only the first run on a machine pays for debootstrap. buildah and debootstrap are required:
without them the tests fail with the command that installs them, they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TAG = "localhost/umt-migrations:test"
BUILD_TIMEOUT = 900  # seconds; a cold build (debootstrap + pip) takes one to three minutes


def buildah(*args: str) -> list[str]:
    """A buildah command line, with the storage driver scripts/build-image uses."""
    driver = os.environ.get("STORAGE_DRIVER")
    return ["buildah", *(["--storage-driver", driver] if driver else []), *args]


@dataclass(frozen=True)
class BuiltImage:
    image_id: str
    #: scripts/build-image's summary: builder, time, size and what the base accounts for.
    summary: str


@dataclass
class Container:
    """A working container of the image; commands run in it with `buildah run`."""

    name: str

    def run(self, *command: str, env: dict[str, str] | None = None, user: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as the image's user (or ``user``), host network, a tmpfs on /tmp."""
        options = ["--isolation", "chroot", "--network", "host",
                   "--mount", "type=tmpfs,destination=/tmp"]
        options += [f"--env={key}={value}" for key, value in (env or {}).items()]
        options += ["--user", user] if user else []
        return subprocess.run(buildah("run", *options, self.name, "--", *command),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def mount(self) -> Path:
        """The container's root filesystem as seen from the host."""
        return Path(_check(buildah("mount", self.name)).strip())


def _check(command: Sequence[str], timeout: float = 120) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}",
                    pytrace=False)
    return proc.stdout


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """Build the Dockerfile with buildah on the stand-in base (cached; seconds when unchanged)."""
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required to build the image: run "
                        "scripts/install-system-packages (Debian packages buildah, debootstrap)",
                        pytrace=False)
    iidfile = tmp_path_factory.mktemp("image") / "image-id"
    command = [str(REPO_ROOT / "scripts" / "build-image"), "--builder", "buildah",
               "--stand-in-base", "--tag", TAG, "--iidfile", str(iidfile)]
    summary = _check(command, timeout=BUILD_TIMEOUT).strip().splitlines()[-1]
    return BuiltImage(image_id=iidfile.read_text().strip(), summary=summary)


@pytest.fixture(scope="session")
def new_container(image: BuiltImage) -> Iterator[Callable[[], Container]]:
    """Factory of working containers of the image, all removed at the end of the session."""
    names: list[str] = []

    def create() -> Container:
        name = f"umt-image-test-{uuid.uuid4().hex[:10]}"
        _check(buildah("from", "--name", name, "--pull=never", image.image_id))
        names.append(name)
        return Container(name)

    yield create
    for name in names:
        subprocess.run(buildah("rm", name), capture_output=True, check=False)


@pytest.fixture(scope="session")
def container(new_container: Callable[[], Container]) -> Container:
    """One working container shared by the read-only checks."""
    return new_container()
