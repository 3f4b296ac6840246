-- POST /login for the bench users in turn (each login hashes with argon2id).
local n = 0
function request()
  n = n + 1
  local user = "load" .. (n % 64)
  return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" },
    '{"username":"' .. user .. '","password":"bench passphrase for latchkey"}')
end
