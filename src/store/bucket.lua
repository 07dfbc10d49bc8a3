local function bucket_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bucket_level(v, now, n, win_ms)
  local full = n * win_ms
  if v then
    local l, ts = string.match(v, '^(%d+) (%d+)$')
    if l then return math.min(full, tonumber(l) + math.max(0, now - tonumber(ts)) * n) end
  end
  return full
end
local function bucket_get(key, now, n, win_ms)
  return bucket_level(redis.call('GET', key), now, n, win_ms)
end
local function bucket_put(key, level, now, n, win_ms)
  redis.call('SET', key, string.format('%d %d', level, now), 'PX', win_ms + 1000)
end
