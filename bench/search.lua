-- wrk script: GET /api/v2/gdpr/subjects over a file of request paths, one per line, each
-- thread starting at its own random offset. The bearer token comes from the environment
-- (BENCH_TOKEN), the path file from BENCH_PATHS.
--
-- The load generator shares the cores with gdprd and PostgreSQL, so it is kept lean: every
-- request is formatted once, in init, and no Lua runs on a response (wrk counts the answers
-- that are not 2xx or 3xx itself, and bench/run.sh reads that count from its summary).
local requests = {}
local i = 0

function init(args)
  local headers = { Authorization = "Bearer " .. os.getenv("BENCH_TOKEN") }
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    requests[#requests + 1] = wrk.format("GET", line, headers)
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  i = math.random(#requests)
end

function request()
  i = i % #requests + 1
  return requests[i]
end
