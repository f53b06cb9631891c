-- Lua: settle a hold. KEYS: hold key. ARGV: id, actual. Returns 1 if settled, 0 if no hold.
-- (The scope keys come from the hold itself; this backend targets a single Redis server.)
return hold_settle(KEYS[1], ARGV[1], tonumber(ARGV[2]))
