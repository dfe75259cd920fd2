"""What the chart tests share: running the real `helm`, reading what it renders, and
validating each object offline against the schemas of a current Kubernetes release."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
Objects = list[dict[str, Any]]
#: The newest Kubernetes release whose schemas kubernetes-validate ships.
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def helm(binary: Path, command: str, chart: Path, *args: str, release: str,
         namespace: str) -> subprocess.CompletedProcess[str]:
    """`helm template RELEASE CHART ...` or `helm lint CHART ...`, in the release namespace."""
    target = [release, str(chart)] if command == "template" else [str(chart)]
    return subprocess.run([str(binary), command, *target, "--namespace", namespace, *args],
                          capture_output=True, text=True, timeout=60)


def umt_chart(binary: Path, work: Path) -> Path:
    """charts/umt with its dependency (charts/schema-migration) built, in a copy under `work`:
    nothing `helm dependency build` generates lands in the tree."""
    for name in ("umt", "schema-migration"):
        shutil.copytree(ROOT / "charts" / name, work / name,
                        ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    built = subprocess.run([str(binary), "dependency", "build", str(work / "umt")],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stdout + built.stderr
    return work / "umt"


def render(binary: Path, chart: Path, *args: str, release: str, namespace: str) -> Objects:
    """The objects `helm template` renders (it must succeed)."""
    result = helm(binary, "template", chart, *args, release=release, namespace=namespace)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: Objects, kind: str) -> Objects:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Objects, kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def assert_valid(scenario: str, obj: dict[str, Any]) -> None:
    """Fail with the object, the field and the reason when the Kubernetes schema refuses it."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{scenario}: {obj['kind']} {obj['metadata']['name']}: {exc.message} "
                    f"at {list(exc.path)}")
