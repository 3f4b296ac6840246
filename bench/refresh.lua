-- refresh + rotate: one thread per connection (-t N -c N), each walking its own family.
-- Tokens come from $BENCH_TOKENS (one refresh token per line, one per thread).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    i = i + 1
    if i == id then token = line end
  end
  rejected = 0
end

function request()
  return wrk.format("POST", "/oauth/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  if status == 200 then
    token = body:match('"refresh_token":"([^"]+)"')
  else
    rejected = rejected + 1
    io.stderr:write("refresh answered " .. status .. ": " .. body .. "\n")
  end
end
