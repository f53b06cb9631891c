-- Lua: add to a counter, setting the TTL only when the counter is created.
-- KEYS: counter. ARGV: delta, ttl ms (0 = none).
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
