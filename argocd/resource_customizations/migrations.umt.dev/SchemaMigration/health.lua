-- Argo CD health of a SchemaMigration (migrations.umt.dev/v1alpha1), in Lua 5.1.
--
-- Argo CD runs a check from argocd-cm WITHOUT Lua's standard libraries (argo-cd util/lua/lua.go:
-- no string, no math, no method calls on strings). This script uses only the language itself,
-- the base functions and tables, so it needs no useOpenLibs key and runs the same with it.
--
-- Healthy     Ready is True for the current generation: the database is at the target. A
--             Drifted condition (onDrift: Report) is added to the message.
-- Degraded    Stalled is True for the current generation (the migration failed, or the cluster
--             or the operator's policy refused its Job), or Ready is False with reason Drifted
--             (onDrift: Fail). The message is the reason and the operator's message.
-- Suspended   Ready is False and the operator is neither at work nor stalled: it waits for a
--             person, e.g. ApprovalPending (the message carries the plan's digest).
-- Progressing anything else: the operator has not seen this generation yet, or its Job is
--             pending, running or retrying. Never Unknown: Argo CD fails a hook on Unknown.
local hs = {}

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

-- Generations compared as text: equal whether they arrive as numbers or as strings.
local function same(a, b)
  return a ~= nil and b ~= nil and tostring(a) == tostring(b)
end

-- True when s starts with prefix. Without the string library there is no sub or find, but
-- Lua compares strings byte by byte: s starts with prefix exactly when
-- prefix <= s < prefix .. "\255" (UTF-8 text never holds the byte 255).
local function starts_with(s, prefix)
  return prefix <= s and s < prefix .. "\255"
end

local metadata = obj.metadata
if type(metadata) ~= "table" then
  metadata = {}
end
local generation = metadata.generation
local status = obj.status
if type(status) ~= "table" then
  status = {}
end

-- The condition of that type, when it speaks of the generation Argo CD applied.
local function condition(kind)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == kind then
      if c.observedGeneration == nil or generation == nil
          or same(c.observedGeneration, generation) then
        return c
      end
      return nil
    end
  end
  return nil
end

local function is(c, value)
  return c ~= nil and c.status == value
end

-- "<Reason>: <message>", as kubectl describe shows it. The operator's failure messages
-- already start with their reason; other messages get it in front.
local function explain(c, fallback)
  local reason = text(c.reason)
  if reason == "" then
    reason = fallback
  end
  local message = text(c.message)
  if message == "" then
    return reason
  end
  if starts_with(message, reason .. ":") then
    return message
  end
  return reason .. ": " .. message
end

local observed = status.observedGeneration
if observed == nil or (generation ~= nil and not same(observed, generation)) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the SchemaMigration operator to observe generation " .. text(generation)
  else
    hs.message = "Waiting for the SchemaMigration operator"
  end
  return hs
end

local ready = condition("Ready")
local reconciling = condition("Reconciling")
local stalled = condition("Stalled")
local drifted = condition("Drifted")

if is(stalled, "True") then
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
  return hs
end

if is(ready, "False") and ready.reason == "Drifted" then
  hs.status = "Degraded"
  if text(ready.message) == "" and is(drifted, "True") then
    hs.message = explain(drifted, "Drifted")
  else
    hs.message = explain(ready, "Drifted")
  end
  return hs
end

if is(ready, "True") then
  hs.status = "Healthy"
  hs.message = text(ready.message)
  if hs.message == "" then
    hs.message = "The database is at the target revision"
  end
  if is(drifted, "True") then
    hs.message = hs.message .. "; " .. explain(drifted, "Drifted")
  end
  return hs
end

if is(ready, "False") and is(reconciling, "False") then
  hs.status = "Suspended"
  hs.message = explain(ready, "NotReady")
  return hs
end

hs.status = "Progressing"
if is(reconciling, "True") and text(reconciling.message) ~= "" then
  hs.message = text(reconciling.message)
elseif text(status.message) ~= "" then
  hs.message = text(status.message)
else
  hs.message = "Waiting for the migration of generation " .. text(observed)
end
return hs
