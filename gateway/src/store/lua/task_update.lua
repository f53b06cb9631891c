-- Lua: compare-and-set a task, moving its index entries.
-- KEYS: task key, new index keys…  ARGV: json (with the new version), member, expected version
-- Returns the new version, 0 on conflict, -1 if missing.
local cur = redis.call('HMGET', KEYS[1], 'v', 'm', 'i')
if not cur[1] then return -1 end
if cur[1] ~= ARGV[3] then return 0 end
if cur[3] and cur[3] ~= '' then
  for k in string.gmatch(cur[3], '[^\n]+') do redis.call('ZREM', k, cur[2]) end
end
local idx = {}
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], 0, ARGV[2])
  idx[#idx + 1] = KEYS[i]
end
local v = tonumber(ARGV[3]) + 1
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', tostring(v), 'm', ARGV[2], 'i', table.concat(idx, '\n'))
return v
