"""Run the project's Argo CD Lua (health check, resource actions) the way Argo CD runs it.

Argo CD evaluates these scripts with gopher-lua 1.1 (Lua 5.1) in ``util/lua/lua.go``
(``VM.runLua``): the state is created with ``lua.Options{SkipOpenLibs: !vm.UseOpenLibs}``, then
``lua.OpenPackage``, ``lua.OpenBase``, ``lua.OpenTable`` and ``OpenSafeOs`` are called, the safe
``os`` loader is preloaded (``l.PreloadModule("os", SafeOsLoader)``), the live object is set as
the global ``obj`` (``decodeValue``) and the script runs with ``l.DoString``. ``UseOpenLibs`` is
true only for a health check whose ``resource.customizations.useOpenLibs.<group>_<kind>`` is
"true" (``GetHealthScript``) and for Argo CD's built-in scripts; resource actions and discovery
always run without it (``server/application/application.go`` builds ``lua.VM{ResourceOverrides:
...}`` for ``RunResourceAction`` and ``getAvailableActions``; ``custom_actions_test.go`` keeps
``UseOpenLibs`` off "to ensure tests reflect the same privileges that API server has").

What a script gets WITHOUT open libraries, from those sources (gopher-lua ``baselib.go``,
``loadlib.go``, ``tablelib.go``, ``auxlib.go`` ``RegisterModule``; argo-cd ``oslib_safe.go``):

* the base functions: assert, collectgarbage, dofile, error, getfenv, getmetatable, ipairs,
  load, loadfile, loadstring, module, next, pairs, pcall, print, rawequal, rawget, rawset,
  require, select, setfenv, setmetatable, tonumber, tostring, type, unpack, xpcall, ``_G``,
  ``_VERSION`` (``coroutine`` is NOT among them, unlike C Lua's ``luaopen_base``);
* ``package`` (loaders, loaded, preload, path, cpath, loadlib, seeall);
* ``table``: concat, getn, insert, maxn, remove, sort;
* ``os`` only through ``require("os")``, holding ``time`` and ``date``: ``OpenSafeOs`` registers
  its functions under ``lua.TabLibName`` and ``RegisterModule`` returns the already loaded
  ``table`` module unchanged, so no global ``os`` exists;
* no ``string``, ``math``, ``io``, ``debug`` or ``coroutine``, and no string metatable: a method
  call such as ``s:sub(1, 3)`` fails like ``string.sub`` does.

The harness reproduces that in C Lua 5.1 (PyPI ``lupa``, module ``lupa.lua51``): a fresh
runtime per run, the string metatable removed, and the script loaded with an environment table
holding exactly the list above (``module`` is left out: it would register into C Lua's real
``package.loaded``). With open libraries the script sees every standard library, as in Argo CD.
C Lua compares strings with ``strcoll``; in the C locale (Python leaves ``LC_COLLATE`` alone)
that is the byte order gopher-lua's ``strCmp`` uses, which :func:`_check_locale` makes sure of.

Argo CD then reads the returned table: a health status must be one of Healthy, Progressing,
Degraded, Suspended, Missing or Unknown, or it becomes Unknown with "Lua returned an invalid
health status" (``ExecuteHealthLua``); an action returns the changed object
(``ExecuteResourceAction``); discovery returns a table of actions, each with ``disabled``
(``ExecuteResourceActionDiscovery``). A Lua error is returned to the user as the error.
"""

from __future__ import annotations

import locale
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lupa.lua51 as lua51

Mode = Literal["argocd", "open"]
MODES: tuple[Mode, ...] = ("argocd", "open")

#: Health statuses Argo CD accepts from a script (util/lua/lua.go, isValidHealthStatusCode).
HEALTH_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing",
                             "Unknown"})

LuaError = lua51.LuaError

# Builds the environment of a script run without open libraries (see the module docstring)
# and runs the script in it. Runs in a full C Lua 5.1 runtime, before the string metatable is
# removed; every name the sandbox gets is copied here, nothing else is reachable.
_SANDBOX = r"""
local source, chunkname, obj, open_libs = ...
local real_G = _G
local env
if open_libs then
  env = setmetatable({obj = obj}, {__index = real_G})
else
  env = {obj = obj, _VERSION = _VERSION}
  for _, name in ipairs({"assert", "collectgarbage", "error", "getmetatable", "ipairs", "next",
                         "pairs", "pcall", "print", "rawequal", "rawget", "rawset", "select",
                         "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall"}) do
    env[name] = real_G[name]
  end
  env._G = env
  local function confined(fn, ...)
    if fn then setfenv(fn, env) end
    return fn, ...
  end
  env.load = function(...) return confined(load(...)) end
  env.loadstring = function(...) return confined(loadstring(...)) end
  env.loadfile = function(...) return confined(loadfile(...)) end
  env.dofile = function(path) return assert(env.loadfile(path))() end
  env.getfenv = function(f)
    local found = getfenv(type(f) == "number" and f + 1 or f or 2)
    if found == real_G then return env end
    return found
  end
  env.setfenv = setfenv
  env.table = {concat = table.concat, getn = table.getn, insert = table.insert,
               maxn = table.maxn, remove = table.remove, sort = table.sort}
  local safe_os = {time = os.time, date = os.date}
  local loaded = {_G = env, table = env.table}
  env.package = {loaded = loaded, path = package.path, cpath = "",
                 preload = {os = function() return safe_os end},
                 loadlib = function() error("loadlib is not supported") end,
                 seeall = function() error("package.seeall is not provided here") end}
  loaded.package = env.package
  env.require = function(name)
    if loaded[name] ~= nil then return loaded[name] end
    local loader = env.package.preload[name]
    if loader == nil then error("module " .. tostring(name) .. " not found") end
    loaded[name] = loader(name) or true
    return loaded[name]
  end
  debug.setmetatable("", nil)  -- gopher-lua sets it only in OpenString
end
local script = assert(loadstring(source, chunkname))
setfenv(script, env)
-- Argo CD stops a script after 1 s (context.WithTimeout in runLua); a budget of instructions
-- stands in for it, so a loop that never ends fails here too instead of hanging the suite.
debug.sethook(function() error("the script ran too long (Argo CD allows 1 s)") end, "", 1e7)
return script()
"""


def _check_locale() -> None:
    collate = locale.setlocale(locale.LC_COLLATE)
    assert collate in ("C", "POSIX"), (
        f"LC_COLLATE is {collate!r}: C Lua would compare strings with strcoll in that locale, "
        "gopher-lua (Argo CD) compares bytes; run the tests with LC_COLLATE=C")


def to_lua(runtime: Any, value: Any) -> Any:
    """``value`` (parsed YAML/JSON) as Argo CD's ``decodeValue`` gives it to Lua.

    Objects become tables (a null member is absent), arrays 1-based tables whose null elements
    are dropped (gopher-lua's ``LTable.Append`` ignores nil), numbers Lua numbers.
    """
    if isinstance(value, Mapping):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        return runtime.table(*(to_lua(runtime, item) for item in value if item is not None))
    if isinstance(value, float):
        assert math.isfinite(value), value
    return value


def from_lua(value: Any) -> Any:
    """A returned Lua value as JSON-shaped Python: a table with keys 1..n is a list."""
    if lua51.lua_type(value) == "table":
        items = dict(value.items())
        if items and all(isinstance(k, int | float) for k in items) and \
                sorted(items) == list(range(1, len(items) + 1)):
            return [from_lua(items[i]) for i in range(1, len(items) + 1)]
        return {str(k): from_lua(v) for k, v in items.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def run(script: Path, obj: Mapping[str, Any], mode: Mode) -> Any:
    """Run ``script`` with the global ``obj`` as Argo CD does in ``mode``; the returned value."""
    _check_locale()
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    sandbox = runtime.eval("function(...) " + _SANDBOX + " end")
    result = sandbox(script.read_text(), f"@{script.name}", to_lua(runtime, obj), mode == "open")
    return from_lua(result)


def health(script: Path, obj: Mapping[str, Any], mode: Mode) -> dict[str, str]:
    """{"status", "message"} as Argo CD reads them from a health script's returned table."""
    result = run(script, obj, mode)
    assert isinstance(result, dict), f"expect table output from Lua script, not {result!r}"
    status, message = result.get("status", ""), result.get("message", "")
    assert isinstance(status, str) and isinstance(message, str), result
    if status not in HEALTH_STATUSES:
        return {"status": "Unknown", "message": "Lua returned an invalid health status"}
    return {"status": status, "message": message}


def discovery(script: Path, obj: Mapping[str, Any], mode: Mode) -> list[dict[str, Any]]:
    """The actions a discovery script offers, as Argo CD lists them (name, disabled, ...)."""
    result = run(script, obj, mode)
    if result in ({}, []):
        return []
    assert isinstance(result, dict), f"expect table output from Lua script, not {result!r}"
    actions = []
    for name, spec in sorted(result.items()):
        action: dict[str, Any] = {"name": name, "disabled": False}
        if isinstance(spec, dict):
            action.update({k: v for k, v in spec.items()
                           if k in ("disabled", "displayName", "iconClass")})
        actions.append(action)
    return actions


def action(script: Path, obj: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
    """The object an (old-style) action returns: what Argo CD patches into the cluster."""
    result = run(script, obj, mode)
    assert isinstance(result, dict), f"expect table output from Lua script, not {result!r}"
    return result
