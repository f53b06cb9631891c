-- Lua: compare-and-set a task, moving its index entries; with it, in the same step, holds
-- settled, charges counted and the new version announced (`task_update` is this with none of
-- them).
-- KEYS: task key, new index keys… (n), per settlement its hold key, per charge (its hold
-- key, then a window's 3 keys or a counter's 1 per scope), the announcement's counter key.
-- ARGV: json (with the new version), member, expected version, n, settlements, (id,
-- actual)×settlements, charges, per charge (id, amount, ttl ms, scopes, (limit, window
-- ms)×scopes), announce (0/1), before, after, keep ms, log key prefix, channel.
-- Returns the new version, 0 on conflict, -1 if missing.
local cur = redis.call('HMGET', KEYS[1], 'v', 'm', 'i')
if not cur[1] then return -1 end
if cur[1] ~= ARGV[3] then return 0 end
local n, s = tonumber(ARGV[4]), tonumber(ARGV[5])
local k, g = 2 + n, 6
for _ = 1, s do
  hold_settle(KEYS[k], ARGV[g], tonumber(ARGV[g + 1]))
  k, g = k + 1, g + 2
end
local c = tonumber(ARGV[g])
g = g + 1
local now = 0
if c > 0 then now = now_ms() end
for _ = 1, c do
  local scopes = tonumber(ARGV[g + 3])
  if redis.call('EXISTS', KEYS[k]) == 0 then hold_take(k, g, now) end
  k, g = k + hold_width(g), g + 4 + 2 * scopes
end
-- The record's list of its index keys (`i`) names exactly the entries written with it: the
-- keys it no longer has lose their entries (all of them if its member changed), the new ones
-- gain theirs, and those it keeps are left as they are.
local same = cur[2] == ARGV[2]
local new = {}
for i = 2, 1 + n do new[KEYS[i]] = true end
local had = {}
if cur[3] and cur[3] ~= '' then
  for key in string.gmatch(cur[3], '[^\n]+') do
    if same and new[key] then had[key] = true else redis.call('ZREM', key, cur[2]) end
  end
end
local idx = {}
for i = 2, 1 + n do
  if not had[KEYS[i]] then redis.call('ZADD', KEYS[i], 0, ARGV[2]) end
  idx[#idx + 1] = KEYS[i]
end
local v = tonumber(ARGV[3]) + 1
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', tostring(v), 'm', ARGV[2], 'i', table.concat(idx, '\n'))
if ARGV[g] == '1' then
  local seq = redis.call('INCRBY', KEYS[k], 1)
  local msg = ARGV[g + 1] .. seq .. ARGV[g + 2]
  redis.call('SET', ARGV[g + 4] .. seq, msg, 'PX', ARGV[g + 3])
  redis.call('PUBLISH', ARGV[g + 5], msg)
end
return v
