-- Lua: all-or-nothing reservation.
-- KEYS: hold key, then per scope a window's main, aux and sum keys or a counter's key
-- ARGV: id, amount, hold ttl ms (0 = none), n, then per scope (limit, window ms or 0)
-- Returns {0} reserved, {1} already held, {2, scope index, used, limit, retry ms or -1}.
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
local now = now_ms()
local refused = hold_fit(1, 1, now)
if refused then return {2, refused[1], refused[2], refused[3], refused[4]} end
hold_take(1, 1, now)
return {0}
