-- Shared by the bench wrk scripts: reading request lists, and one JSON summary line
-- (`BENCH_JSON {...}`) that bench/wrk_load.py parses.

local M = {}

function M.read_lines(path)
  local lines = {}
  local file = assert(io.open(path, "r"), "cannot open " .. path)
  for line in file:lines() do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  file:close()
  assert(#lines > 0, "no lines in " .. path)
  return lines
end

function M.headers(token)
  local headers = {}
  if token ~= nil and token ~= "" and token ~= "-" then
    headers["Authorization"] = "Bearer " .. token
  end
  return headers
end

function M.cycle(requests)
  local i = 0
  local n = #requests
  return function()
    i = i + 1
    if i > n then
      i = 1
    end
    return requests[i]
  end
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.max
  ))
end

return M
