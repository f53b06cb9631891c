-- Lua: give a lease back. KEYS: lease. ARGV: holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
