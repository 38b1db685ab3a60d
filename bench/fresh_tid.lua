-- wrk script: POSTs fixture 01 (tests/fixtures/callbacks/01-basic.json) with a fresh tid per
-- request, so every callback is a new order (no dedupe hit). Usage, from the repo root:
--   wrk -t2 -c64 -d20s -s bench/fresh_tid.lua http://127.0.0.1:8080/v1/callback
-- THINK_MS=10 makes each connection wait that long between requests (light load):
--   THINK_MS=10 wrk -t2 -c16 -d20s -s bench/fresh_tid.lua http://127.0.0.1:8080/v1/callback
local file = io.open("tests/fixtures/callbacks/01-basic.json", "r")
local template = file:read("*a")
file:close()
local think = tonumber(os.getenv("THINK_MS") or "0")
if think > 0 then
  function delay()
    return think
  end
end
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("prefix", string.format("W%d-%d-", os.time(), thread_id))
end

function request()
  counter = counter + 1
  local tid = prefix .. counter
  local body = template:gsub("T0001", tid)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("JSON {\"requests\":%d,\"seconds\":%.3f,\"per_s\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"errors\":%d}\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
