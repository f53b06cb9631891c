-- Lua: `task_create` — unless the condition failed, the task exists or a hold does not fit,
-- take the holds, insert the task and add it to its indexes, then the lookups, the log entry
-- and a numbered announcement (`task_insert` is this with none of them).
-- KEYS: task key, index keys… (n), lookup keys… (m), the announcement's counter key, the
-- condition's key, per hold (its key, then a window's 3 keys or a counter's 1 per scope),
-- the log's key and its sequence key.
-- ARGV: json, member, version, n, m, (value, ttl ms or 0)×m, announce (0/1), before, after,
-- keep ms, log key prefix, channel, condition ('' none, '-' absent, else the SHA-1), the
-- number of holds, per hold (id, amount, ttl ms, scopes, (limit, window ms)×scopes), log
-- (0/1), entry, keep.
-- Returns {-2} if the condition failed, {-1} if the task exists, {-3, hold, scope, used,
-- limit, retry ms or -1} if a hold does not fit, else {the announcement's number (0: none)}.
local n, m = tonumber(ARGV[4]), tonumber(ARGV[5])
local a = 6 + 2 * m
local cond = ARGV[a + 6]
if cond ~= '' then
  local cur = redis.call('GET', KEYS[3 + n + m])
  if cond == '-' then
    if cur then return {-2} end
  elseif not cur or redis.sha1hex(cur) ~= cond then
    return {-2}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local k, g = 4 + n + m, a + 8
local take = {}
local now = 0
if tonumber(ARGV[a + 7]) > 0 then now = now_ms() end
for i = 1, tonumber(ARGV[a + 7]) do
  local scopes = tonumber(ARGV[g + 3])
  if redis.call('EXISTS', KEYS[k]) == 0 then
    local refused = hold_fit(k, g, now)
    if refused then return {-3, i - 1, refused[1], refused[2], refused[3], refused[4]} end
    take[#take + 1] = {k, g}
  end
  k, g = k + hold_width(g), g + 4 + 2 * scopes
end
for _, h in ipairs(take) do hold_take(h[1], h[2], now) end
local idx = {}
for i = 2, 1 + n do
  redis.call('ZADD', KEYS[i], 0, ARGV[2])
  idx[#idx + 1] = KEYS[i]
end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', ARGV[3], 'm', ARGV[2], 'i', table.concat(idx, '\n'))
for j = 1, m do
  local ttl = tonumber(ARGV[5 + 2 * j])
  if ttl > 0 then redis.call('SET', KEYS[1 + n + j], ARGV[4 + 2 * j], 'PX', ttl) else redis.call('SET', KEYS[1 + n + j], ARGV[4 + 2 * j]) end
end
if ARGV[g] == '1' then log_add(KEYS[k], KEYS[k + 1], ARGV[g + 1], ARGV[g + 2]) end
if ARGV[a] ~= '1' then return {0} end
local seq = redis.call('INCRBY', KEYS[2 + n + m], 1)
local msg = ARGV[a + 1] .. seq .. ARGV[a + 2]
redis.call('SET', ARGV[a + 4] .. seq, msg, 'PX', ARGV[a + 3])
redis.call('PUBLISH', ARGV[a + 5], msg)
return {seq}
