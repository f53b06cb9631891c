-- Lua: delete a task at an expected version, with its index entries.
-- KEYS: task key. ARGV: expected version. Returns 1 if deleted, 0 otherwise.
local cur = redis.call('HMGET', KEYS[1], 'v', 'm', 'i')
if not cur[1] or cur[1] ~= ARGV[1] then return 0 end
if cur[3] and cur[3] ~= '' then
  for k in string.gmatch(cur[3], '[^\n]+') do redis.call('ZREM', k, cur[2]) end
end
redis.call('DEL', KEYS[1])
return 1
