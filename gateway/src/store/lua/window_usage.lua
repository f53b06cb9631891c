-- Lua: a window's live sum. KEYS: main, aux, sum. ARGV: window ms.
return window_sum(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), now_ms())
