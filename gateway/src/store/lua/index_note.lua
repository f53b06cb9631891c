-- Lua: a page of a one-time seed of an index kept since a record was written: each member of
-- KEYS[1] after ARGV[1] (a lex bound: '-' or '(' and the last member read), at most ARGV[2],
-- whose record's list of index keys (`i`) names a key of the pairs (KEYS[2 + 2j], KEYS[3 + 2j])
-- is added to that pair's second key, and the second key to its list (so later writes move
-- it). Reads each record at ARGV[3] .. its id: this backend targets a single Redis server.
-- Returns the last member read, or '' when the index has no more.
local page = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(page) do
  local task = ARGV[3] .. (string.match(m, '^[^|]*|(.*)$') or m)
  local i = redis.call('HGET', task, 'i')
  if i then
    local has = {}
    for key in string.gmatch(i, '[^\n]+') do has[key] = true end
    for j = 2, #KEYS - 1, 2 do
      if has[KEYS[j]] then
        local target = KEYS[j + 1]
        if not has[target] then
          redis.call('ZADD', target, 0, m)
          redis.call('HSET', task, 'i', i .. '\n' .. target)
        end
        break
      end
    end
  end
end
if #page < tonumber(ARGV[2]) then return '' end
return page[#page]
