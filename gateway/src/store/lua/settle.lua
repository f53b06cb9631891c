-- Lua: settle a hold. KEYS: hold key. ARGV: id, actual. Returns 1 if settled, 0 if no hold.
-- (The scope keys come from the hold itself; this backend targets a single Redis server.)
local h = redis.call('GET', KEYS[1])
if not h then return 0 end
local id, actual = ARGV[1], tonumber(ARGV[2])
local amount = nil
for line in string.gmatch(h, '[^\n]+') do
  if not amount then
    amount = tonumber(line)
  else
    local main, aux, sum, win = string.match(line, '^(.-)\t(.-)\t(.-)\t(%d+)$')
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
redis.call('DEL', KEYS[1])
return 1
