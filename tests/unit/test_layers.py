"""Each import contract in pyproject.toml fails when its rule is broken.

`make lint` runs `lint-imports`, which shows that the contracts hold today; these tests show
that each one can fail. Every case copies `src/` and `tests/` into a scratch folder, adds one
import that breaks one rule, and runs the real `lint-imports` on the copy (first on
PYTHONPATH, and the working directory, so it is the copy that gets analysed) with the
repository's own contracts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """The real `lint-imports` over the copy (``src`` and ``tests`` beside it), with the
    repository's contracts."""
    selection = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", *selection, str(ROOT / "pyproject.toml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=src.parent,
        env={**os.environ, "PYTHONPATH": str(src)},
    )


@pytest.fixture
def src(tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    for folder in ("src", "tests"):
        shutil.copytree(ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def add_import(src: Path, module: str, statement: str) -> None:
    base = src.parent if module.startswith("tests.") else src
    path = base / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{module} is gone: update the contract and this test"
    path.write_text(path.read_text() + f"\n{statement}  # noqa\n")


def test_the_untouched_copy_keeps_every_contract(src: Path) -> None:
    result = lint_imports(src)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("contract", "module", "statement"),
    [
        ("runner-not-operator", "umt_migrations.report", "import umt_operator.reasons"),
        # indirectly too: a runner module importing one that imports the operator
        ("runner-not-operator", "umt_migrations.errors", "from umt_operator import reasons"),
        ("models-alone", "umt.models.base", "import umt_migrations.errors"),
        ("models-alone", "umt.models.enums", "import umt_operator.reasons"),
        ("pure-no-io", "umt_migrations.graph", "import sqlalchemy.engine"),
        ("pure-no-io", "umt_migrations.waiter", "import lightkube"),
        ("pure-no-io", "umt_migrations.api_names", "import kopf"),
        ("pure-no-io", "umt_operator.jobs", "import kopf"),
        ("pure-no-io", "umt_operator.spec", "import subprocess"),
        ("pure-no-io", "umt_operator.status", "import aiohttp"),
        ("pure-no-io", "umt_operator.settings", "import httpx"),
        # through a module that is not pure itself: jobs -> reasons -> aiohttp
        ("pure-no-io", "umt_operator.reasons", "import aiohttp"),
        ("one-door-aiohttp", "umt_operator.reconcile", "import aiohttp"),
        ("one-door-lightkube", "umt_migrations.gate", "from lightkube import Client"),
        ("one-door-lightkube", "umt_operator.kube", "import lightkube"),
        # the cycle the waiter had before `apply` moved out of it
        ("no-cycles", "umt_migrations.waiter", "from umt_migrations import waiter_api"),
        ("no-cycles", "umt_operator.spec", "from umt_operator import settings"),
        # a cycle in the emulator: a module the kubelet imports importing the kubelet back (the
        # kubelet <-> Job controller cycle the issue found is gone: neither imports the other)
        ("no-cycles", "tests.k8s.worker", "from tests.k8s.kubelet import FakeKubelet"),
    ],
)
def test_a_contract_fails_when_its_rule_is_broken(src: Path, contract: str, module: str,
                                                  statement: str) -> None:
    assert lint_imports(src, contract).returncode == 0  # kept before the change
    add_import(src, module, statement)
    result = lint_imports(src, contract)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "1 broken" in result.stdout, result.stdout
