"""The plain install operator/ as kustomize builds it (the real `kubectl kustomize`): the CRD
apart from the operator, so that deleting the operator never deletes the CRD and every
SchemaMigration with it; one `images:` setting of an overlay drives both the operator's image
and the migration Jobs' default image (UMT_OPERATOR_DEFAULT_IMAGE)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ROOT / "operator"
PUBLISHED = "ghcr.io/umt/umt-migrations"


def kustomize(binary: Path, folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run([str(binary), "kustomize", str(folder)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_deleting_the_operator_leaves_the_crd(kubectl_binary: Path) -> None:
    operator = kustomize(kubectl_binary, PLAIN)
    assert "CustomResourceDefinition" not in [o["kind"] for o in operator]
    crd = kustomize(kubectl_binary, PLAIN / "crd")
    assert [(o["kind"], o["metadata"]["name"]) for o in crd] == [
        ("CustomResourceDefinition", "schemamigrations.migrations.umt.dev")]


def test_without_an_overlay_the_jobs_run_the_operator_image(kubectl_binary: Path) -> None:
    container = operator_container(kustomize(kubectl_binary, PLAIN))
    assert container["image"].startswith(PUBLISHED + ":")
    assert env(container)["UMT_OPERATOR_DEFAULT_IMAGE"] == container["image"]


@pytest.mark.parametrize(("entry", "expected"), [
    ({"newName": "registry.example.com/umt/umt-migrations", "newTag": "0.2.0"},
     "registry.example.com/umt/umt-migrations:0.2.0"),
    ({"newTag": "0.2.0"}, f"{PUBLISHED}:0.2.0"),
    ({"newName": "registry.example.com/umt/umt-migrations",
      "digest": "sha256:" + "ab" * 32},
     "registry.example.com/umt/umt-migrations@sha256:" + "ab" * 32),
])
def test_an_overlays_images_setting_moves_both_images(kubectl_binary: Path,
                                                      tmp_path: Path, entry: dict[str, str],
                                                      expected: str) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(PLAIN, overlay)], "images": [{"name": PUBLISHED, **entry}]}))
    objects = kustomize(kubectl_binary, overlay)
    container = operator_container(objects)
    assert container["image"] == expected
    before = env(operator_container(kustomize(kubectl_binary, PLAIN)))
    after = env(container)
    assert after["UMT_OPERATOR_DEFAULT_IMAGE"] == expected
    # ...and nothing else: only a value naming the matched image is an image
    del before["UMT_OPERATOR_DEFAULT_IMAGE"], after["UMT_OPERATOR_DEFAULT_IMAGE"]
    assert after == before
