-- POST /recommendations: a new user's 5 ratings, rotating through prepared JSON bodies.
-- The bodies come from the file named by WRK_BODIES (one JSON object per line).
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  bodies[#bodies + 1] = line
end
local n = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
  n = n + 1
  return wrk.format("POST", "/recommendations", headers, bodies[(n % #bodies) + 1])
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
