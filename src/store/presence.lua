local op, now = ARGV[1], ARGV[2]
local function live(pu)
  for _, f in ipairs(redis.call('HKEYS', pu)) do
    if string.sub(f, 1, 2) == 'w:' then return true end
  end
  return false
end
local function shown(pu)
  local v = redis.call('HMGET', pu, 'on', 'status', 'seen')
  if v[1] == '1' and v[2] ~= 'invisible' then return v[2] or 'online', v[3] or '' end
  return 'offline', v[3] or ''
end
-- A user announced online with no connection left goes offline now:
-- whether others saw it online (so an offline goes out), else nil.
local function gone(pu)
  if live(pu) or redis.call('HGET', pu, 'on') ~= '1' then return nil end
  local was = shown(pu)
  redis.call('HSET', pu, 'on', 0, 'seen', now)
  return was ~= 'offline'
end
if op == 'beat' then
  -- KEYS: 1 this worker's heartbeat, 2 the set of workers. ARGV 3 wid, 4 ms.
  redis.call('SET', KEYS[1], now, 'PX', ARGV[4])
  redis.call('SADD', KEYS[2], ARGV[3])
  return redis.call('EXISTS', KEYS[3])
end
if op == 'conn' or op == 'sync' then
  -- KEYS: 1 this worker's users, then a user's presence per pair of ARGV
  -- from 4: "T/U", delta (sync: this worker's count). ARGV 3 wid. Per
  -- user: 1 came online (shown status follows), -1 no connection left
  -- (settle after the grace), 0.
  local out = {}
  for i = 1, #KEYS - 1 do
    local pu, tu, d = KEYS[i + 1], ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
    local n, m = d, d
    if op == 'sync' then
      redis.call('HSET', pu, 'w:' .. ARGV[3], d)
      redis.call('HSET', KEYS[1], tu, d)
    else
      n = redis.call('HINCRBY', pu, 'w:' .. ARGV[3], d)
      m = redis.call('HINCRBY', KEYS[1], tu, d)
    end
    if n <= 0 then redis.call('HDEL', pu, 'w:' .. ARGV[3]) end
    if m <= 0 then redis.call('HDEL', KEYS[1], tu) end
    if live(pu) then
      if redis.call('HGET', pu, 'on') ~= '1' then
        redis.call('HSET', pu, 'on', 1)
        local s = shown(pu)
        out[#out + 1] = {1, s, ''}
      else
        out[#out + 1] = {0, '', ''}
      end
    elseif redis.call('HGET', pu, 'on') == '1' then
      out[#out + 1] = {-1, '', ''}
    else
      out[#out + 1] = {0, '', ''}
    end
  end
  return out
end
if op == 'settle' then
  -- KEYS: users' presence. Per user: 1 went offline (was shown, last seen), 0.
  local out = {}
  for i = 1, #KEYS do
    local g = gone(KEYS[i])
    if g ~= nil then
      out[#out + 1] = {g and 1 or 0, 'offline', now}
    else
      out[#out + 1] = {0, '', ''}
    end
  end
  return out
end
if op == 'set' then
  -- KEYS: 1 the user's presence. ARGV 3 status. {changed, shown, last seen}.
  local before = shown(KEYS[1])
  redis.call('HSET', KEYS[1], 'status', ARGV[3])
  local after, seen = shown(KEYS[1])
  return {before ~= after and 1 or 0, after, seen}
end
if op == 'count' then
  -- KEYS: users' presence. How many are shown not offline.
  local n = 0
  for i = 1, #KEYS do
    if shown(KEYS[i]) ~= 'offline' then n = n + 1 end
  end
  return n
end
if op == 'get' then
  -- KEYS: users' presence. Per user {shown, last seen}.
  local out = {}
  for i = 1, #KEYS do
    local s, seen = shown(KEYS[i])
    out[#out + 1] = {s, seen}
  end
  return out
end
-- reap. KEYS: 1 the set of workers. ARGV 3 key prefix ("chatd:"). Every
-- worker whose heartbeat expired: its users lose its connections; those
-- left with none go offline now (no grace: they are gone). Returns
-- {"T/U", shown before} of each. Key names are made here: which workers
-- and users are involved is known only inside.
local out = {}
for _, wid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[3] .. 'hb:' .. wid) == 0 then
    local pw = ARGV[3] .. 'pw:' .. wid
    for _, tu in ipairs(redis.call('HKEYS', pw)) do
      local pu = ARGV[3] .. 'pu:{' .. tu .. '}'
      redis.call('HDEL', pu, 'w:' .. wid)
      if gone(pu) then out[#out + 1] = tu end
    end
    redis.call('DEL', pw)
    redis.call('SREM', KEYS[1], wid)
  end
end
return out
