-- Argo CD health of a SchemaMigration (migrations.umt.dev/v1alpha1), in Lua 5.1.
--
-- Healthy     Ready is True for the current generation: the database is at the target.
-- Degraded    Stalled is True for the current generation: the migration failed and needs a
--             spec change; the message is the reason and the operator's message.
-- Progressing anything else: the operator has not seen this generation yet, or its Job is
--             pending or running. Never Unknown: Argo CD fails a hook on Unknown.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- A condition counts only when it speaks of the generation Argo CD just applied.
local function current(c, generation)
  return c ~= nil and (c.observedGeneration == nil or generation == nil
    or c.observedGeneration == generation)
end

local function explain(c, fallback)
  local reason = c.reason or fallback
  local message = c.message or ""
  if message == "" then
    return reason
  end
  -- The operator's failure messages already start with "<Reason>: ".
  if string.sub(message, 1, string.len(reason) + 1) == reason .. ":" then
    return message
  end
  return reason .. ": " .. message
end

local generation = obj.metadata and obj.metadata.generation or nil
local status = obj.status or {}
local observed = status.observedGeneration

if observed == nil or (generation ~= nil and observed ~= generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the SchemaMigration operator to observe generation " .. generation
  else
    hs.message = "Waiting for the SchemaMigration operator"
  end
  return hs
end

local stalled = condition(status, "Stalled")
if current(stalled, generation) and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
  return hs
end

local ready = condition(status, "Ready")
if current(ready, generation) and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "The database is at the target revision"
  return hs
end

hs.status = "Progressing"
local reconciling = condition(status, "Reconciling")
if current(reconciling, generation) and reconciling.status == "True" and reconciling.message then
  hs.message = reconciling.message
elseif status.message ~= nil and status.message ~= "" then
  hs.message = status.message
else
  hs.message = "Waiting for the migration of generation " .. tostring(observed)
end
return hs
