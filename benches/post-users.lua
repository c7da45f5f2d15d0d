-- post.lua with a user key per request: each request carries `x-user-id: bench-user-N`, N
-- cycling through USERS users (the second script argument, default 1000), so the gateway's
-- sticky splits hash a different key from one request to the next instead of the body's one
-- fixed `user`. Same body, same summary line as post.lua.
-- usage: wrk -t1 -c32 -d15s --latency -s post-users.lua URL -- chat.json 1000

-- wrk loads a script by its path: post.lua is next to this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "post.lua")

local post_init = init
local requests = {}
local next_user = 0

function init(args)
  post_init(args)
  local users = tonumber(args[2]) or 1000
  -- Formatted once here: request() only picks one, so the load generator's cost per request
  -- stays close to post.lua's static request.
  for n = 1, users do
    wrk.headers["X-User-Id"] = string.format("bench-user-%d", n)
    requests[n] = wrk.format()
  end
end

function request()
  next_user = next_user % #requests + 1
  return requests[next_user]
end
