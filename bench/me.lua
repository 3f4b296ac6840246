-- GET /me with a Bearer token (verify + session check); token from $BENCH_ACCESS.
local f = io.open(os.getenv("BENCH_ACCESS"))
local access = f:read("*l")
f:close()
wrk.method = "GET"
wrk.path = "/me"
wrk.headers["Authorization"] = "Bearer " .. access
