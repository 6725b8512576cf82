-- wrk script for trackgate's benchmark. Configured by environment variables:
--   BENCH_PATH     request path (with query)
--   BENCH_BODY     file holding the JSON body
--   BENCH_HEADERS  optional extra headers, one `Name: value` per line
--   BENCH_TOKENS   optional file: one bearer token per line, each used once in turn
--   BENCH_OFFSET   where in the token file to start (the harness never reuses a token)
--   BENCH_DELAY_MS optional pause before each request (paced, for latency at a set rate)
-- At the end it prints one JSON line with requests, duration, errors and latency.
local path = os.getenv("BENCH_PATH")
local body = io.open(os.getenv("BENCH_BODY")):read("*a")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local tokens = {}
local token_file = os.getenv("BENCH_TOKENS")
if token_file and token_file ~= "" then
  for line in io.lines(token_file) do tokens[#tokens + 1] = line end
end
local extra = {}
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then extra[name] = value end
end
local counter = 0
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

function request()
  local headers = { ["Content-Type"] = "application/json" }
  for name, value in pairs(extra) do headers[name] = value end
  if #tokens > 0 then
    counter = counter + 1
    headers["Authorization"] = "Bearer " .. tokens[((offset + counter) % #tokens) + 1]
  end
  return wrk.format("POST", path, headers, body)
end

if delay_ms > 0 then
  function delay() return delay_ms end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
