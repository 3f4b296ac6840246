-- POST /login for the bench users in turn (each login hashes with argon2id). Each wrk
-- thread (one connection each) logs in as its own 4 of the 64 users, so no account has
-- two checks at once: latchkey allows one password check per account in the argon2
-- queue and answers a second one 429.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local n = 0
function request()
  n = n + 1
  local user = "load" .. (((id - 1) * 4 + n % 4) % 64)
  return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" },
    '{"username":"' .. user .. '","password":"bench passphrase for latchkey"}')
end
