-- Lua: append to a log and drop what is beyond the bound.
-- KEYS: log, sequence. ARGV: entry, keep. Returns the new sequence number.
return log_add(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
