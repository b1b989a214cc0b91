-- wrk script for every load run of the benchmark: precomputed requests, a JSON summary.
--
--   wrk ... -s bench/lua/load.lua URL -- method=POST path=/oneinbox/start-call \
--       body={} users=1000 origin=http://127.0.0.1:PORT auth=KEY
--
-- users=N cycles the X-Bench-User header through N callers (per-caller limit state
-- grows as in production); origin= adds the headers a same-origin browser fetch has.
-- Requests are formatted once in init(): building them per request would make wrk,
-- which shares a core with the fake upstream, a bigger part of what is measured.

local requests = {}
local count = 0
local index = 0

function init(args)
  local opts = {}
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then opts[key] = value end
  end
  local method = opts.method or "GET"
  local path = opts.path -- nil: the URL's path
  local users = tonumber(opts.users or "0")
  for user = 1, math.max(users, 1) do
    local headers = {}
    if opts.body then headers["Content-Type"] = "application/json" end
    if opts.auth then headers["Authorization"] = "Bearer " .. opts.auth end
    if opts.origin then
      headers["Origin"] = opts.origin
      headers["Sec-Fetch-Site"] = "same-origin"
      headers["Sec-Fetch-Mode"] = "cors"
    end
    if users > 0 then headers["X-Bench-User"] = "user" .. user end
    requests[user] = wrk.format(method, path, headers, opts.body)
  end
  count = #requests
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"mean_us":%.1f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
