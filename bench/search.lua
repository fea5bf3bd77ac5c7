-- wrk script: GET /api/v2/gdpr/subjects over a file of request paths, one per line, each
-- thread starting at its own random offset. The bearer token comes from the environment
-- (BENCH_TOKEN), the path file from BENCH_PATHS.
local paths = {}
local i = 0

function init(args)
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    paths[#paths + 1] = line
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  i = math.random(#paths)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
  end
end
