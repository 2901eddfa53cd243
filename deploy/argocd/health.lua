-- Argo CD health of a Brook resource (Stream, Consumer, Queue, DeliveryStream), from what the operator
-- writes: status.observedGeneration and the Ready, Progressing and Degraded conditions.
local hs = {}
local kind = obj.kind or "resource"

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "The " .. kind .. " is being deleted; the Brook operator releases it once its brokers are gone"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Brook operator to reconcile this " .. kind
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration
if observed == nil or observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Brook operator to observe generation " .. tostring(generation)
  return hs
end

local ready, progressing, degraded = nil, nil, nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    local current = condition.observedGeneration == nil or condition.observedGeneration >= generation
    if current then
      if condition.type == "Ready" then
        ready = condition
      elseif condition.type == "Progressing" then
        progressing = condition
      elseif condition.type == "Degraded" then
        degraded = condition
      end
    end
  end
end

local function describe(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "The Brook operator reports the " .. kind .. " degraded")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
elseif progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing, "The Brook operator is working on the " .. kind)
elseif ready ~= nil then
  hs.status = "Progressing"
  hs.message = describe(ready, "Not ready yet")
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Brook operator to report the " .. kind .. "'s conditions"
end
return hs
