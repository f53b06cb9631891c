-- Lua: makes one entry of an index and its record's list of index keys (`i`) agree, for a
-- one-time repair of an index seeded without the lists. KEYS: the index, the task's key.
-- ARGV: the entry's member, the record's version as read, keep (1: the record belongs in the
-- index, so its list names it; 0: the entry is removed).
-- Returns -1 if the record changed since it was read (read it again), 1 if something was
-- repaired, 0 if nothing needed it.
local cur = redis.call('HMGET', KEYS[2], 'v', 'i')
if not cur[1] then return redis.call('ZREM', KEYS[1], ARGV[1]) end
if cur[1] ~= ARGV[2] then return -1 end
local list = cur[2] or ''
for key in string.gmatch(list, '[^\n]+') do
  if key == KEYS[1] then return 0 end
end
if ARGV[3] ~= '1' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
if list == '' then list = KEYS[1] else list = list .. '\n' .. KEYS[1] end
redis.call('HSET', KEYS[2], 'i', list)
return 1
