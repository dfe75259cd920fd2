"""The Argo CD health check of SchemaMigration, run by a real Lua 5.1 interpreter.

Argo CD evaluates `health.lua` with gopher-lua (Lua 5.1 semantics) and a global ``obj`` holding
the live object. The harness below does the same with Debian's ``lua5.1``: each YAML object is
turned into Lua table source, assigned to ``obj``, and the script's returned table is read back.
The cases come from ``health_test.yaml``, in Argo CD's own layout
(``resource_customizations/<group>/<Kind>/health_test.yaml`` with ``testdata/``), and from the
statuses the operator's code really writes (``tests/unit/test_kstatus.py``).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_kstatus import OPERATOR_STATUSES, Phase

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHECK_DIR = ROOT / "argocd" / "health" / "migrations.umt.dev" / "SchemaMigration"
HEALTH_LUA = CHECK_DIR / "health.lua"
ARGOCD_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def lua_binary() -> str:
    found = shutil.which("lua5.1")
    if found is None:  # a missing interpreter is a broken CI machine, never a skip
        pytest.fail("lua5.1 is not installed (Debian package lua5.1): the Argo CD health "
                    "check cannot be tested", pytrace=False)
    return found


def lua_source(value: Any) -> str:
    """``value`` (parsed YAML/JSON) as a Lua 5.1 expression."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        assert math.isfinite(value), value
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_source(item) for item in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_string(str(key))}] = {lua_source(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no Lua form for {type(value).__name__}")


def lua_string(text: str) -> str:
    """A double-quoted Lua string literal of ``text`` (UTF-8 bytes kept as they are)."""
    out = []
    for byte in text.encode():
        if byte in b'"\\':
            out.append("\\" + chr(byte))
        elif 32 <= byte < 127:
            out.append(chr(byte))
        else:  # control characters and UTF-8 bytes: a decimal escape, as Lua 5.1 reads them
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def run_health(obj: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """Evaluate health.lua on ``obj`` as Argo CD does; returns {"status", "message"}."""
    script = tmp_path / "case.lua"
    script.write_text(
        f"obj = {lua_source(obj)}\n"
        f"local check = assert(loadfile({lua_string(str(HEALTH_LUA))}))\n"
        "local hs = check()\n"
        'io.write(tostring(hs.status), "\\0", tostring(hs.message))\n'
    )
    result = subprocess.run([lua_binary(), str(script)], capture_output=True, timeout=10)
    assert result.returncode == 0, result.stderr.decode()
    status, message = result.stdout.decode().split("\0")
    return {"status": status, "message": message}


def health_tests() -> list[dict[str, Any]]:
    return yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]


def test_lua_literal_round_trips_awkward_text(tmp_path: Path) -> None:
    text = 'quote " backslash \\ newline \n tab \t arrow → end'
    obj = {"metadata": {"generation": 1}, "status": {
        "observedGeneration": 1,
        "conditions": [{"type": "Stalled", "status": "True", "observedGeneration": 1,
                        "reason": "MigrationFailed", "message": text}]}}
    assert run_health(obj, tmp_path) == {"status": "Degraded",
                                         "message": f"MigrationFailed: {text}"}


def test_health_test_yaml_has_a_case_per_testdata_file() -> None:
    used = {case["inputPath"] for case in health_tests()}
    present = {f"testdata/{p.name}" for p in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert used == present
    assert {case["healthStatus"]["status"] for case in health_tests()} == {
        "Healthy", "Progressing", "Degraded"}


@pytest.mark.parametrize("case", health_tests(), ids=lambda c: Path(c["inputPath"]).stem)
def test_health_test_yaml(case: dict[str, Any], tmp_path: Path) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    assert run_health(obj, tmp_path) == case["healthStatus"]


@pytest.mark.parametrize("phase", OPERATOR_STATUSES, ids=lambda p: p.name)
def test_statuses_the_operator_writes(phase: Phase, tmp_path: Path) -> None:
    health = run_health(phase.resource, tmp_path)
    assert health["status"] == phase.argocd
    assert health["status"] in ARGOCD_STATUSES - {"Unknown"}
    assert health["message"]
    status = phase.resource["status"]
    if phase.argocd == "Degraded":  # the reason and the operator's message, as kubectl shows
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] in health["message"]
        assert stalled["message"].split(": ", 1)[-1] in health["message"]


def test_empty_object_is_progressing(tmp_path: Path) -> None:
    """The script runs and answers (never Unknown) even for an object with nothing in it."""
    assert run_health({}, tmp_path)["status"] == "Progressing"
