-- POST JSON bodies to one path, cycling through the lines of a file.
--   wrk -t1 -c64 -d10s -s bench/wrk/post_json.lua http://127.0.0.1:PORT -- PATH BODIES_FILE [TOKEN|-]
-- TOKEN (or "-" for none) is sent as `Authorization: Bearer TOKEN`.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
package.path = here .. "?.lua;" .. package.path
local common = require("common")

function init(args)
  local path, file, token = args[1], args[2], args[3]
  assert(path and file, "usage: -- PATH BODIES_FILE [TOKEN]")
  local requests = {}
  for _, body in ipairs(common.read_lines(file)) do
    local headers = common.headers(token)
    headers["Content-Type"] = "application/json"
    requests[#requests + 1] = wrk.format("POST", path, headers, body)
  end
  -- wrk looks for its `request` hook after `init`: each call, the next in turn.
  request = common.cycle(requests)
end

done = common.done
