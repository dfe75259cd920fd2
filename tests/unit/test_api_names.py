"""The API's names have one home (umt_migrations.api_names), and it agrees with the CRD."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from umt_migrations import api_names

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "schemamigrations.migrations.umt.dev.yaml").read_text())


def test_the_names_are_the_crds() -> None:
    spec = CRD["spec"]
    (stored,) = [v["name"] for v in spec["versions"] if v["storage"]]
    assert CRD["metadata"]["name"] == f"{api_names.PLURAL}.{api_names.GROUP}"
    assert (spec["group"], stored) == (api_names.GROUP, api_names.VERSION)
    assert f"{spec['group']}/{stored}" == api_names.API_VERSION
    assert (spec["names"]["kind"], spec["names"]["plural"], spec["names"]["singular"]) == (
        api_names.KIND, api_names.PLURAL, api_names.SINGULAR)
    assert spec["names"]["shortNames"] == [api_names.SHORT_NAME]


def test_no_other_module_spells_them() -> None:
    """Every module takes the names from api_names: none holds one as a string of its own."""
    names = {api_names.GROUP, api_names.VERSION, api_names.API_VERSION, api_names.KIND,
             api_names.PLURAL}
    home = Path(api_names.__file__).resolve()
    found = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        if path.resolve() == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []
