-- GET /users/{id}/recommendations?k=10 for user ids rotating through a list.
-- The ids come from the file named by WRK_IDS (one raw id per line), so caches do not flatter.
-- WRK_QUERY, when set, is appended to the query string (e.g. "&explain=true").
local ids = {}
for line in io.lines(os.getenv("WRK_IDS")) do
  ids[#ids + 1] = line
end
local n = 0
local extra = os.getenv("WRK_QUERY") or ""

request = function()
  n = n + 1
  return wrk.format("GET", "/users/" .. ids[(n % #ids) + 1] .. "/recommendations?k=10" .. extra)
end

-- One JSON line for benchmarks/serve_load.py: latency in microseconds, errors of every kind
-- (socket errors and non-2xx answers).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
