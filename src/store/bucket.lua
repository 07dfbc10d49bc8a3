local function bucket_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bucket_milli(v, now, rate, burst)
  local cap = burst * 1000
  if v then
    local m, ts = string.match(v, '^(%d+) (%d+)$')
    if m then return math.min(cap, tonumber(m) + math.max(0, now - tonumber(ts)) * rate) end
  end
  return cap
end
local function bucket_get(key, now, rate, burst)
  return bucket_milli(redis.call('GET', key), now, rate, burst)
end
local function bucket_put(key, milli, now, rate, burst)
  redis.call('SET', key, string.format('%d %d', milli, now), 'PX',
    math.ceil(burst * 1000 / rate) + 1000)
end
