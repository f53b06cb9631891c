-- Lua helpers shared by the scripts: the server clock, a window's live sum, a hold's check,
-- claim and settlement, a log's append.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A window is three keys: main (member -> time), aux (member -> amount) and sum (the running
-- total of aux). Drops entries at or before now - win and returns the live sum.
local function window_sum(main, aux, sum, win, now)
  local old = redis.call('ZRANGEBYSCORE', main, '-inf', now - win)
  if #old > 0 then
    local gone = 0
    for _, m in ipairs(old) do
      gone = gone + tonumber(redis.call('HGET', aux, m) or '0')
      redis.call('HDEL', aux, m)
    end
    redis.call('ZREMRANGEBYSCORE', main, '-inf', now - win)
    if gone ~= 0 then redis.call('DECRBY', sum, gone) end
  end
  return tonumber(redis.call('GET', sum) or '0')
end
-- A hold's arguments start at KEYS[k] (the hold's key, then per scope: a window's main, aux
-- and sum, a counter's one key) and ARGV[g] (id, amount, hold ttl ms or 0, scopes, then limit
-- and window ms or 0 per scope). Calls `f(i, main, aux, sum, limit, win)` per scope until it
-- returns something, which is returned; else returns nil.
local function hold_scopes(k, g, f)
  local key = k + 1
  for i = 1, tonumber(ARGV[g + 3]) do
    local limit, win = tonumber(ARGV[g + 2 + 2 * i]), tonumber(ARGV[g + 3 + 2 * i])
    local main, aux, sum = KEYS[key], nil, nil
    if win > 0 then aux, sum, key = KEYS[key + 1], KEYS[key + 2], key + 3 else key = key + 1 end
    local out = f(i, main, aux, sum, limit, win)
    if out then return out end
  end
  return nil
end
-- How many keys a hold's arguments take (see `hold_scopes`).
local function hold_width(g)
  local n = 1
  for i = 1, tonumber(ARGV[g + 3]) do
    if tonumber(ARGV[g + 3 + 2 * i]) > 0 then n = n + 3 else n = n + 1 end
  end
  return n
end
-- Whether it fits: nil, or {scope index from 0, used, limit, retry ms or -1}.
local function hold_fit(k, g, now)
  local amount = tonumber(ARGV[g + 1])
  return hold_scopes(k, g, function(i, main, aux, sum, limit, win)
    local used
    if win > 0 then used = window_sum(main, aux, sum, win, now) else used = tonumber(redis.call('GET', main) or '0') end
    if used + amount <= limit then return nil end
    local retry = -1
    if win > 0 and amount <= limit then
      local need, freed = used + amount - limit, 0
      local entries = redis.call('ZRANGE', main, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        freed = freed + tonumber(redis.call('HGET', aux, entries[j]) or '0')
        if freed >= need then retry = tonumber(entries[j + 1]) + win - now; break end
      end
    end
    return {i - 1, used, limit, retry}
  end)
end
-- Claims a hold that fits in every scope and keeps it (what settling it needs: its amount,
-- then a line per scope, a counter's key or a window's keys and length).
local function hold_take(k, g, now)
  local id, amount, hold_ttl = ARGV[g], tonumber(ARGV[g + 1]), tonumber(ARGV[g + 2])
  local lines = {tostring(amount)}
  hold_scopes(k, g, function(i, main, aux, sum, limit, win)
    if win > 0 then
      redis.call('ZADD', main, now, id)
      redis.call('HSET', aux, id, amount)
      redis.call('INCRBY', sum, amount)
      redis.call('PEXPIRE', main, win)
      redis.call('PEXPIRE', aux, win)
      redis.call('PEXPIRE', sum, win)
      lines[#lines + 1] = main .. '\t' .. aux .. '\t' .. sum .. '\t' .. win
    else
      redis.call('INCRBY', main, amount)
      lines[#lines + 1] = main
    end
    return nil
  end)
  if hold_ttl > 0 then
    redis.call('SET', KEYS[k], table.concat(lines, '\n'), 'PX', hold_ttl)
  else
    redis.call('SET', KEYS[k], table.concat(lines, '\n'))
  end
end
-- Appends to a log and drops what is beyond the bound; returns the new sequence number.
local function log_add(log, seqkey, entry, keep)
  local seq = redis.call('INCR', seqkey)
  redis.call('ZADD', log, seq, seq .. '|' .. entry)
  redis.call('ZREMRANGEBYRANK', log, 0, -(tonumber(keep) + 1))
  return seq
end
-- Settles the hold at `key` (id `id`) to `actual`: each scope it touched moves by actual - amount
-- (0 releases it). Returns 1 if settled, 0 if there was no hold.
local function hold_settle(key, id, actual)
  local h = redis.call('GET', key)
  if not h then return 0 end
  local amount = nil
  for line in string.gmatch(h, '[^\n]+') do
    if not amount then
      amount = tonumber(line)
    else
      -- A counter's line is its key (written before: key, key, key, 0).
      local main, aux, sum, win = string.match(line, '^(.-)\t(.-)\t(.-)\t(%d+)$')
      if not main then main, win = line, '0' end
      if tonumber(win) > 0 then
        local held = redis.call('HGET', aux, id)
        if held then
          if actual == 0 then
            redis.call('ZREM', main, id)
            redis.call('HDEL', aux, id)
          else
            redis.call('HSET', aux, id, actual)
          end
          redis.call('INCRBY', sum, actual - tonumber(held))
        end
      else
        redis.call('INCRBY', main, actual - amount)
      end
    end
  end
  redis.call('DEL', key)
  return 1
end
