-- GET one or more paths in turn, with a bearer token.
--   wrk -t1 -c64 -d10s -s bench/wrk/get.lua http://127.0.0.1:PORT -- TOKEN|- PATH [PATH...]

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

function init(args)
  local token = args[1]
  assert(args[2], "usage: -- TOKEN|- PATH [PATH...]")
  local requests = {}
  for i = 2, #args do
    requests[#requests + 1] = wrk.format("GET", args[i], common.headers(token), nil)
  end
  -- wrk looks for its `request` hook after `init`: each call, the next in turn.
  request = common.cycle(requests)
end

done = common.done
