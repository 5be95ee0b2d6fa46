-- wrk script: HTTP/1.1 pipelining. Each "request" wrk writes is DEPTH
-- requests back to back (GET of the URL's path); wrk counts each response
-- it parses, so requests/sec counts single requests, not batches.
--
--   wrk -c 50 -d 3s -s bench/pipeline.lua http://127.0.0.1:PORT/ -- 16
--
-- DEPTH is the first script argument (default 16).

local depth = 16
local batch

function init(args)
  depth = tonumber(args[1]) or 16
  local parts = {}
  for i = 1, depth do
    parts[i] = wrk.format(nil, nil)
  end
  batch = table.concat(parts)
end

function request()
  return batch
end
