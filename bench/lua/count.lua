-- Appended to load.lua for a run bounded in count: the thread stops after limit=N
-- responses and says so on stdout; the bench then interrupts wrk (SIGINT), which
-- otherwise sleeps out its whole -d. Defining response() makes wrk parse every
-- response, so load runs that measure speed do not use this file.

local seen = 0
local limit = 0
local base_init = init

function init(args)
  base_init(args)
  for _, arg in ipairs(args) do
    local value = arg:match("^limit=(%d+)$")
    if value then limit = tonumber(value) end
  end
end

function response(status, headers, body)
  seen = seen + 1
  if limit > 0 and seen == limit then
    io.write("WRKLIMIT\n")
    io.flush()
    wrk.thread:stop()
  end
end
