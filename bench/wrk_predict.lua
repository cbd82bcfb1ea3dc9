-- wrk script for bench/http_load.py: single-quote POST /v1/predict requests, and a JSON summary at the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local quotes = {
  "We welcome the resumption of talks and thank the mediators for their patience.",
  "The ministry condemned the seizure of the tanker and demanded its immediate release.",
  "Any further violation of our airspace will be answered without hesitation.",
  "We are deeply concerned by the humanitarian situation in the camps.",
  "The delegation will arrive in Geneva on Tuesday for the second round.",
}
local per_request = tonumber(os.getenv("QUOTES_PER_REQUEST") or "1")
local counter = 0

request = function()
  local items = {}
  for j = 1, per_request do
    counter = counter + 1
    items[j] = '{"text": "' .. quotes[(counter % #quotes) + 1] .. '", "id": "' .. counter .. '"}'
  end
  return wrk.format(nil, "/v1/predict", nil, '{"quotes": [' .. table.concat(items, ", ") .. ']}')
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "timeouts": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
