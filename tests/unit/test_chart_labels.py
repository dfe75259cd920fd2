"""The labels every chart of this repository puts on its objects, one rule for all three:
`commonLabels` reaches every object, and the `helm.sh/chart` label is `<name>-<version>` with
a `+` (SemVer build metadata, not allowed in a label value) replaced by `_`, as Helm's own
`helm create` scaffold does (helm/helm pkg/chartutil/create.go, the `<chart>.chart` helper)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import charts
from tests.charts import Objects, one

pytestmark = pytest.mark.unit

RELEASE, NAMESPACE = "labels", "apps"
BUILD = "0.1.0+build.7"
TEAM = ["--set", "commonLabels.team=payments"]


def with_version(chart: Path, version: str) -> None:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = version
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))


def copied(name: str, work: Path) -> Path:
    shutil.copytree(charts.ROOT / "charts" / name, work / name,
                    ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    return work / name


def render(binary: Path, chart: Path, *args: str) -> Objects:
    return charts.render(binary, chart, *args, release=RELEASE, namespace=NAMESPACE)


def labelled(objects: Objects) -> list[tuple[str, dict[str, Any]]]:
    """Each object's labels, and those of the pods it makes; the SchemaMigration a hook Job
    applies (in its ConfigMap) too."""
    found: list[tuple[str, dict[str, Any]]] = []
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        found.append((where, obj["metadata"].get("labels") or {}))
        template = obj.get("spec", {}).get("template")
        if isinstance(template, dict):
            found.append((f"{where} pods", template["metadata"].get("labels") or {}))
        if obj["kind"] == "ConfigMap":
            for key, text in obj.get("data", {}).items():
                doc = yaml.safe_load(text)
                if isinstance(doc, dict) and doc.get("kind") == "SchemaMigration":
                    found.append((f"{where}/{key}", doc["metadata"].get("labels") or {}))
    return found


@pytest.fixture(scope="module")
def built(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three charts, copied, each at a version with build metadata."""
    work = tmp_path_factory.mktemp("charts")
    umt = charts.umt_chart(helm_binary, work / "umt-with-dependency")
    with_version(umt, BUILD)
    found = {"umt": umt}
    for name in ("schema-migration", "umt-migrations-operator"):
        found[name] = copied(name, work)
        with_version(found[name], BUILD)
    return found


@pytest.mark.parametrize("name", ["umt", "schema-migration", "umt-migrations-operator"])
def test_the_chart_label_replaces_the_plus(helm_binary: Path, built: dict[str, Path],
                                           name: str) -> None:
    objects = render(helm_binary, built[name])
    own = [(where, labels) for where, labels in labelled(objects)
           if labels.get("helm.sh/chart", "").startswith(f"{name}-")]
    assert own, f"no object of {name} carries helm.sh/chart"
    for where, labels in own:
        assert labels["helm.sh/chart"] == f"{name}-0.1.0_build.7", where


@pytest.mark.parametrize("name", ["umt", "schema-migration", "umt-migrations-operator"])
def test_common_labels_reach_every_object(helm_binary: Path, built: dict[str, Path],
                                          name: str) -> None:
    args = [*TEAM, "--set", "schema-migration.commonLabels.team=payments"] if name == "umt" \
        else TEAM
    objects = render(helm_binary, built[name], *args)
    plain = render(helm_binary, built[name])
    for where, labels in labelled(objects):
        if where.endswith(" pods") and "helm.sh/chart" not in labels:
            continue  # a selector's pod labels (immutable in a Deployment): never more
        assert labels.get("team") == "payments", where
    assert all("team" not in labels for _, labels in labelled(plain))


def test_the_app_chart_labels_only_its_own_objects(helm_binary: Path,
                                                   built: dict[str, Path]) -> None:
    """charts/umt's commonLabels label the app; the migration's objects take the subchart's."""
    objects = render(helm_binary, built["umt"], *TEAM)
    assert one(objects, "Deployment")["metadata"]["labels"]["team"] == "payments"
    assert "team" not in one(objects, "Job")["metadata"]["labels"]
