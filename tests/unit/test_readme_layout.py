"""README.md's layout map names every module of the two packages, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("umt_migrations", "umt_operator")


def layout_map() -> dict[str, set[str]]:
    """The ``*.py`` names the map lists under each package's line, by package."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    named: dict[str, set[str]] = {}
    package = None
    for line in block.splitlines():
        top = re.match(r"src/(\w+)/", line)
        if top:
            package = top[1]
            named.setdefault(package, set())
        elif not line.startswith(" "):
            package = None
        elif package is not None:
            # a module's own name, not one quoted in `backticks` (the project's `env.py`)
            named[package] |= set(re.findall(r"(?<![`\w])(\w+\.py)\b(?!`)", line))
    return named


@pytest.mark.parametrize("package", PACKAGES)
def test_the_layout_map_matches_the_modules(package: str) -> None:
    modules = {path.name for path in (ROOT / "src" / package).glob("*.py")} - {"__init__.py"}
    named = layout_map()[package]
    assert sorted(modules - named) == [], "modules the README's layout map does not name"
    assert sorted(named - modules) == [], "names in the README's layout map with no module"
