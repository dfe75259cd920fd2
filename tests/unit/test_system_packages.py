"""`make test` sets itself up: its first step (scripts/install-system-packages) installs the
Debian packages the suite needs, or stops with one line saying which and how; never a dozen
failing tests. Run here on a scratch PATH that lacks buildah."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-system-packages"
NOBODY = 65534


def scratch_path(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only links to `tools` (those found on this machine), readable by all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o755)
    for tool in tools:
        found = shutil.which(tool)
        if found is not None:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def run(path: str, *args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    """The script read from stdin by bash (so that any user can read it), on PATH `path`."""
    command = ["/bin/bash", "-s", "--", *args]
    if as_nobody and os.geteuid() == 0:
        setpriv = shutil.which("setpriv") or "setpriv"
        command = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   *command]
    return subprocess.run(command, input=SCRIPT.read_text(), capture_output=True, text=True,
                          env={"PATH": path, "LANG": "C"}, timeout=60, check=False)


def test_make_test_runs_it_first() -> None:
    """`make -n test` (what make would run) starts with this script, before pytest."""
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout.splitlines()
    steps = [line for line in plan if "install-system-packages" in line or "pytest" in line]
    assert steps and "install-system-packages" in steps[0], plan
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_with_everything_on_path_it_does_nothing(tmp_path: Path) -> None:
    needed = ("buildah", "debootstrap")
    if any(shutil.which(tool) is None for tool in needed):
        pytest.fail("this machine lacks one of buildah, debootstrap: run "
                    "scripts/install-system-packages", pytrace=False)
    result = run(scratch_path(tmp_path, *needed), "--check")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_as_root_it_installs_what_is_missing(tmp_path: Path) -> None:
    """Root with apt-get: the one apt-get command, for exactly the missing packages. (Run by a
    user, the same scratch PATH has no sudo: the one-line stop of the next test.)"""
    path = scratch_path(tmp_path, "apt-get", "debootstrap")
    result = run(path, "--dry-run")
    if os.geteuid() != 0:
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
        return
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("would run: apt-get install -y --no-install-recommends "
                             "buildah\n")


def test_without_root_or_sudo_it_stops_with_one_line() -> None:
    with tempfile.TemporaryDirectory() as scratch:  # pytest's tmp_path is private to root
        Path(scratch).chmod(0o755)
        path = scratch_path(Path(scratch), "apt-get", "debootstrap")  # no sudo on this PATH
        result = run(path, as_nobody=True)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == ("error: the test suite needs the Debian packages buildah "
                        "(not on PATH); run as root (or with password-less sudo): "
                        "sudo apt-get install -y --no-install-recommends buildah")


def test_check_mode_names_the_packages_and_installs_nothing(tmp_path: Path) -> None:
    result = run(scratch_path(tmp_path, "apt-get"), "--check")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the test suite needs the Debian packages buildah debootstrap (not on "
        "PATH); install them with: sudo apt-get install -y --no-install-recommends buildah "
        "debootstrap"]


def test_without_apt_get_it_says_so(tmp_path: Path) -> None:
    result = run(scratch_path(tmp_path, "debootstrap"), "--dry-run")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the test suite needs the Debian packages buildah (not on PATH); this "
        "machine has no apt-get: install buildah with its package manager"]
