local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = bucket_now()
local milli = bucket_get(KEYS[1], now, rate, burst)
if milli < 1000 then return math.ceil((1000 - milli) / rate) end
bucket_put(KEYS[1], milli - 1000, now, rate, burst)
return 0
