"""The Argo CD Lua of SchemaMigration (health check, action ``approve``), run as Argo CD runs it.

Every script is run twice by :mod:`tests.argocd_lua`: as an ``argocd-cm`` customization runs in
Argo CD (no standard libraries: no ``string``, no ``math``, no string methods; the list and its
sources are in that module), and with open libraries (``useOpenLibs``, Argo CD's built-in
scripts); both must give the answer Argo CD should show. The cases come from the files in Argo
CD's own layout (``resource_customizations/<group>/<Kind>/health_test.yaml`` and
``actions/action_test.yaml``, each with ``testdata/``) and from the statuses the operator's code
writes (``tests/unit/test_kstatus.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import argocd_lua
from tests.argocd_lua import MODES, Mode
from tests.charts import KUBERNETES_VERSION
from tests.unit.test_kstatus import OPERATOR_STATUSES, Phase

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CUSTOMIZATIONS = ROOT / "argocd" / "resource_customizations"
CHECK_DIR = CUSTOMIZATIONS / "migrations.umt.dev" / "SchemaMigration"
HEALTH_LUA = CHECK_DIR / "health.lua"
ACTIONS_DIR = CHECK_DIR / "actions"
DISCOVERY_LUA = ACTIONS_DIR / "discovery.lua"
APPROVE_LUA = ACTIONS_DIR / "approve" / "action.lua"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def health_tests() -> list[dict[str, Any]]:
    return load(CHECK_DIR / "health_test.yaml")["tests"]


def action_tests() -> dict[str, list[dict[str, Any]]]:
    return load(ACTIONS_DIR / "action_test.yaml")


def case_id(case: dict[str, Any]) -> str:
    return Path(case["inputPath"]).stem


# --- the harness is Argo CD's sandbox -----------------------------------------------------------

PROBE = """
local seen = {}
for _, name in ipairs({"string", "math", "os", "io", "debug", "coroutine", "table", "package",
                       "require", "loadstring", "pairs", "tostring"}) do
  seen[name] = type(_G[name])
end
seen.method = pcall(function() return ("abc"):sub(1, 1) end)
seen.require_string = pcall(require, "string")
local ok, os_module = pcall(require, "os")
seen.os_date = ok and type(os_module.date) or "none"
seen.os_execute = ok and type(os_module.execute) or "none"
seen.concat = table.concat({"a", "b"}, "-")
seen.compare = "a" < "b" and "ab" < "a\\255"
return seen
"""


def test_the_sandbox_holds_what_argo_cd_gives_an_argocd_cm_script(tmp_path: Path) -> None:
    probe = tmp_path / "probe.lua"
    probe.write_text(PROBE)
    assert argocd_lua.run(probe, {}, "argocd") == {
        "string": "nil", "math": "nil", "os": "nil", "io": "nil", "debug": "nil",
        "coroutine": "nil", "table": "table", "package": "table", "require": "function",
        "loadstring": "function", "pairs": "function", "tostring": "function",
        "method": False, "require_string": False, "os_date": "function", "os_execute": "nil",
        "concat": "a-b", "compare": True}
    opened = argocd_lua.run(probe, {}, "open")
    assert opened["string"] == opened["math"] == opened["os"] == "table"
    assert opened["method"] is True and opened["os_execute"] == "function"


def test_a_script_using_the_string_library_fails_only_without_open_libs(tmp_path: Path) -> None:
    """What broke the shipped check (issue 15): the harness must catch it."""
    script = tmp_path / "uses_string.lua"
    script.write_text('return {status = "Degraded", message = string.sub(obj.text, 1, 3)}')
    with pytest.raises(argocd_lua.LuaError, match="string"):
        argocd_lua.health(script, {"text": "abcdef"}, "argocd")
    assert argocd_lua.health(script, {"text": "abcdef"}, "open") == {
        "status": "Degraded", "message": "abc"}


def test_a_script_that_never_ends_fails(tmp_path: Path) -> None:
    script = tmp_path / "loop.lua"
    script.write_text("while true do end")
    for mode in MODES:
        with pytest.raises(argocd_lua.LuaError, match="ran too long"):
            argocd_lua.run(script, {}, mode)


def test_objects_arrive_as_argo_cd_decodes_them(tmp_path: Path) -> None:
    script = tmp_path / "shape.lua"
    script.write_text("return {n = #obj.items, last = obj.items[#obj.items], absent = obj.gone,"
                      " kind = type(obj.generation)}")
    result = argocd_lua.run(script, {"items": ["a", None, "c"], "gone": None, "generation": 3},
                            "argocd")
    assert result == {"n": 2, "last": "c", "kind": "number"}


def test_every_shipped_lua_file_is_tested() -> None:
    shipped = {p.relative_to(CHECK_DIR) for p in CUSTOMIZATIONS.rglob("*.lua")}
    assert shipped == {Path("health.lua"), Path("actions/discovery.lua"),
                       Path("actions/approve/action.lua")}


# --- health ---------------------------------------------------------------------------------------


def test_health_test_yaml_has_a_case_per_testdata_file() -> None:
    used = {case["inputPath"] for case in health_tests()}
    present = {f"testdata/{p.name}" for p in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert used == present
    assert {case["healthStatus"]["status"] for case in health_tests()} == {
        "Healthy", "Progressing", "Degraded", "Suspended"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", health_tests(), ids=case_id)
def test_health_test_yaml(case: dict[str, Any], mode: Mode) -> None:
    obj = load(CHECK_DIR / case["inputPath"])
    assert argocd_lua.health(HEALTH_LUA, obj, mode) == case["healthStatus"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase", OPERATOR_STATUSES, ids=lambda p: p.name)
def test_statuses_the_operator_writes(phase: Phase, mode: Mode) -> None:
    health = argocd_lua.health(HEALTH_LUA, phase.resource, mode)
    assert health["status"] == phase.argocd
    assert health["message"]
    if phase.argocd == "Degraded":  # the reason and the operator's message, as kubectl shows
        conditions = {c["type"]: c for c in phase.resource["status"]["conditions"]}
        cause = conditions["Stalled"]
        if cause["status"] != "True":
            cause = conditions["Ready"]
        assert cause["reason"] in health["message"]
        assert cause["message"].split(": ", 1)[-1] in health["message"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("reason", "message", "shown"),
    [
        ("MigrationFailed", "MigrationFailed: revision x failed",
         "MigrationFailed: revision x failed"),
        ("SecretNotFound", 'secret "umt-db" not found',
         'SecretNotFound: secret "umt-db" not found'),
        ("Lock", "LockTimeout: waited", "Lock: LockTimeout: waited"),
        ("LockTimeout", "LockTimeout", "LockTimeout: LockTimeout"),
        ("LockTimeout", "LockTimeout:", "LockTimeout:"),
        ("Unschedulable", "", "Unschedulable"),
        ("MigrationFailed", "→ é ✓ quote \" backslash \\ end",
         "MigrationFailed: → é ✓ quote \" backslash \\ end"),
    ],
)
def test_degraded_message_names_the_reason_once(reason: str, message: str, shown: str,
                                                mode: Mode) -> None:
    obj = {"metadata": {"generation": 1}, "status": {
        "observedGeneration": 1,
        "conditions": [{"type": "Stalled", "status": "True", "observedGeneration": 1,
                        "reason": reason, "message": message}]}}
    assert argocd_lua.health(HEALTH_LUA, obj, mode) == {"status": "Degraded", "message": shown}


ODD_OBJECTS = [
    {},
    {"metadata": "x", "status": "y"},
    {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": "Ready"}},
    {"metadata": {"generation": 1},
     "status": {"observedGeneration": 1, "conditions": ["Ready", 7]}},
    {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "Stalled", "status": True}, {"type": "Ready"}]}},
    {"metadata": {"generation": "2"}, "status": {"observedGeneration": 2}},
    {"metadata": {}, "status": {"observedGeneration": 1, "message": "working"}},
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("obj", ODD_OBJECTS, ids=range(len(ODD_OBJECTS)))
def test_odd_objects_are_progressing_never_an_error(obj: dict[str, Any], mode: Mode) -> None:
    """Argo CD fails a hook on Unknown, and a Lua error is shown as one."""
    assert argocd_lua.health(HEALTH_LUA, obj, mode)["status"] == "Progressing"


def test_a_condition_of_an_older_generation_is_not_believed() -> None:
    obj = {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Stalled", "status": "True", "observedGeneration": 1, "reason": "MigrationFailed"},
        {"type": "Ready", "status": "True", "observedGeneration": 1, "reason": "Succeeded"}]}}
    for mode in MODES:
        assert argocd_lua.health(HEALTH_LUA, obj, mode)["status"] == "Progressing"


# --- the action "approve" -------------------------------------------------------------------------


def test_action_test_yaml_covers_every_testdata_file() -> None:
    tests = action_tests()
    used = {t["inputPath"] for t in tests["discoveryTests"]}
    used |= {p for t in tests["actionTests"] for p in (t["inputPath"], t["expectedOutputPath"])}
    assert used == {f"testdata/{p.name}" for p in (ACTIONS_DIR / "testdata").glob("*.yaml")}
    assert {t["action"] for t in tests["actionTests"]} == {"approve"}
    assert {r["disabled"] for t in tests["discoveryTests"] for r in t["result"]} == {True, False}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", action_tests()["discoveryTests"], ids=case_id)
def test_discovery(case: dict[str, Any], mode: Mode) -> None:
    obj = load(ACTIONS_DIR / case["inputPath"])
    assert argocd_lua.discovery(DISCOVERY_LUA, obj, mode) == case["result"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", action_tests()["actionTests"], ids=case_id)
def test_approve(case: dict[str, Any], mode: Mode) -> None:
    obj = load(ACTIONS_DIR / case["inputPath"])
    expected = load(ACTIONS_DIR / case["expectedOutputPath"])
    result = argocd_lua.action(APPROVE_LUA, obj, mode)
    assert result == expected
    assert result["spec"]["review"]["approvedPlanDigest"] == obj["status"]["plan"]["digest"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", action_tests()["discoveryTests"], ids=case_id)
def test_approve_runs_exactly_when_discovery_offers_it(case: dict[str, Any], mode: Mode) -> None:
    """Run anyway (the CLI does not ask discovery), ``approve`` refuses what it does not offer."""
    obj = load(ACTIONS_DIR / case["inputPath"])
    (offered,) = argocd_lua.discovery(DISCOVERY_LUA, obj, mode)
    if offered["disabled"]:
        with pytest.raises(argocd_lua.LuaError, match="no plan of this SchemaMigration waits"):
            argocd_lua.action(APPROVE_LUA, obj, mode)
    else:
        approved = argocd_lua.action(APPROVE_LUA, obj, mode)
        assert approved["spec"]["review"]["approvedPlanDigest"].startswith("sha256:")


def pending_digest_function(script: Path) -> str:
    text = script.read_text()
    start = text.index("local function pending_digest()")
    return text[start:text.index("\nend\n", start) + 5]


def test_discovery_and_approve_share_one_definition_of_pending() -> None:
    """Argo CD runs each script alone (no shared module can be required), so the test for "a
    plan waits for approval" is written twice: it must stay the same text in both."""
    assert pending_digest_function(DISCOVERY_LUA) == pending_digest_function(APPROVE_LUA)


def test_approve_creates_spec_review_when_absent() -> None:
    obj = load(ACTIONS_DIR / "testdata" / "approval-pending.yaml")
    del obj["spec"]["review"]
    for mode in MODES:
        result = argocd_lua.action(APPROVE_LUA, obj, mode)
        assert result["spec"]["review"] == {
            "approvedPlanDigest": obj["status"]["plan"]["digest"]}
        assert {k: v for k, v in result["spec"].items() if k != "review"} == obj["spec"]


# --- argocd-cm carries exactly these scripts -----------------------------------------------------


def test_argocd_cm_actions_example_carries_the_tested_scripts() -> None:
    (config_map,) = [d for d in yaml.safe_load_all(
        (ROOT / "examples" / "argocd-cm-actions.yaml").read_text()) if d]
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    (key,) = config_map["data"]
    # Argo CD's key for custom actions: resource.customizations.actions.<group>_<kind>
    assert key == "resource.customizations.actions.migrations.umt.dev_SchemaMigration"
    actions = yaml.safe_load(config_map["data"][key])
    assert actions["discovery.lua"] == DISCOVERY_LUA.read_text()
    assert actions["definitions"] == [{"name": "approve", "action.lua": APPROVE_LUA.read_text()}]
