local n, win_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = bucket_now()
local level = bucket_get(KEYS[1], now, n, win_ms)
if level < win_ms then return math.ceil((win_ms - level) / n) end
bucket_put(KEYS[1], level - win_ms, now, n, win_ms)
return 0
