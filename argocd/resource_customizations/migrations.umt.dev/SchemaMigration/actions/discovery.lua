-- Argo CD resource actions of a SchemaMigration, in Lua 5.1 without the standard libraries
-- (Argo CD runs actions and their discovery that way, whatever useOpenLibs says).
--
-- approve  enabled only while a plan waits for approval: the operator observed this generation
--          and reports Ready False with reason ApprovalPending, status.plan.digest is set and
--          spec.review.approvedPlanDigest does not hold it yet.
local actions = {}
actions["approve"] = {["disabled"] = true}

local function pending_digest()
  local metadata, status, spec = obj.metadata, obj.status, obj.spec
  if type(metadata) ~= "table" or type(status) ~= "table" then
    return nil
  end
  local generation = metadata.generation
  if generation == nil or tostring(status.observedGeneration) ~= tostring(generation) then
    return nil
  end
  local plan = status.plan
  if type(plan) ~= "table" or type(plan.digest) ~= "string" or plan.digest == "" then
    return nil
  end
  if type(spec) == "table" and type(spec.review) == "table"
      and spec.review.approvedPlanDigest == plan.digest then
    return nil
  end
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == "Ready" then
      if c.status == "False" and c.reason == "ApprovalPending" and (c.observedGeneration == nil
          or tostring(c.observedGeneration) == tostring(generation)) then
        return plan.digest
      end
      return nil
    end
  end
  return nil
end

if pending_digest() ~= nil then
  actions["approve"]["disabled"] = false
end
return actions
