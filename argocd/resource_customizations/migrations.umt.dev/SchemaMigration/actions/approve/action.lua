-- Argo CD resource action "approve" of a SchemaMigration, in Lua 5.1 without the standard
-- libraries: sets spec.review.approvedPlanDigest to the digest of the plan that waits for
-- approval (status.plan.digest), exactly what `umt-migrations approve` patches. Refuses, with
-- an error Argo CD shows, when no plan waits (same test as discovery.lua). Approving a plan
-- that changes later approves nothing: the operator runs a plan only while its digest is the
-- approved one. pending_digest is the same text as in discovery.lua (Argo CD runs each script
-- alone; a test keeps the two equal).
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

local digest = pending_digest()
if digest == nil then
  error("no plan of this SchemaMigration waits for approval (the operator must report Ready "
    .. "False with reason ApprovalPending for the current generation, with status.plan.digest); "
    .. "nothing was changed", 0)
end
if type(obj.spec) ~= "table" then
  obj.spec = {}
end
if type(obj.spec.review) ~= "table" then
  obj.spec.review = {}
end
obj.spec.review.approvedPlanDigest = digest
return obj
