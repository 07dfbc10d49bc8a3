local op, ts = ARGV[1], ARGV[8]
local room = ARGV[7]
local function next_seq()
  local cur = redis.call('GET', KEYS[2])
  if cur then return tonumber(cur) + 1 end
  if ARGV[5] == '' then return nil end
  cur = tonumber(ARGV[5])
  local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if last[1] then
    local s = tonumber(string.match(last[1][1], '^(%d+)'))
    if s > cur then cur = s end
  end
  return cur + 1
end
local function append(s, ev)
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], s .. '-0', 'e', ev)
  redis.call('XADD', KEYS[1], '*', 't', ARGV[6], 'r', room, 's', s, 'e', ev)
  redis.call('SET', KEYS[2], s)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('PUBLISH', ARGV[4], ev)
end
if op == 'event' then
  local seq = next_seq()
  if not seq then return {-1} end
  local s = string.format('%d', seq)
  append(s, ARGV[11] .. s .. ARGV[12])
  if ARGV[13] ~= '' then redis.call('PUBLISH', ARGV[13], ARGV[14]) end
  return {1, seq, tonumber(ts), 0, 0}
end
local st, id = KEYS[4], ARGV[11]
local function find_new()
  -- A message sent moments ago, not yet in PostgreSQL: at the end of the stream.
  local pat = '^{"type":"message:new","room":"[^"]*","seq":(%d+),"msg":{"id":"' ..
    string.gsub(id, '%p', '%%%0') .. '","seq":%d+,"user":"([^"]*)"'
  for _, e in ipairs(redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1000)) do
    local s, u = string.match(e[2][2], pat)
    if s then return s, u, e[2][2] end
  end
  return nil
end
if op == 'peek' then
  if redis.call('HGET', st, 'd') == '1' then return {-7} end
  if ARGV[12] ~= '1' then return {3, 0, 0, 0, 0, ''} end
  local s, u, ev = find_new()
  if not s then return {-7} end
  return {3, tonumber(s), 0, 0, 0, string.match(ev, ',"reply_to":"([^"]*)"') or '', u}
end
if redis.call('EXISTS', st) == 0 then
  local seed = ARGV[10]
  if seed == '' then return {-6} end
  if seed == 'pg' then
    redis.call('HSET', st, 'u', ARGV[17], 's', ARGV[18], 'd', ARGV[19], 'e', ARGV[20], 'nr', 0)
    for i = 21, #ARGV, 2 do
      redis.call('HSET', st, 'x:' .. ARGV[i] .. ' ' .. ARGV[i + 1], 1)
      if redis.call('HINCRBY', st, 'r:' .. ARGV[i + 1], 1) == 1 then
        redis.call('HINCRBY', st, 'nr', 1)
      end
    end
  else
    local s, u = find_new()
    if not s then return {-7} end
    redis.call('HSET', st, 'u', u, 's', s, 'd', 0, 'e', 0, 'nr', 0)
  end
end
redis.call('EXPIRE', st, ARGV[9])
local m = redis.call('HMGET', st, 'u', 's', 'd', 'e', 'nr')
if m[3] == '1' then return {-7} end

if op == 'edit' then
  if m[1] ~= ARGV[12] then return {-8} end
  local seq = next_seq()
  if not seq then return {-1} end
  local s = string.format('%d', seq)
  local n = redis.call('HINCRBY', st, 'e', 1)
  append(s, '{"type":"message:edited","room":"' .. room .. '","seq":' .. s .. ',"msg_id":"' .. id ..
    '","user":"' .. ARGV[12] .. '","body":' .. ARGV[13] .. ',"edited_at":' .. ts .. ',"edits":' .. n .. '}')
  return {1, seq, tonumber(ts), 0, n}
elseif op == 'delete' then
  if m[1] ~= ARGV[12] and ARGV[13] ~= '1' then return {-8} end
  local seq = next_seq()
  if not seq then return {-1} end
  local s = string.format('%d', seq)
  redis.call('HSET', st, 'd', 1)
  redis.call('ZADD', KEYS[5], m[2], id)
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if first[1] then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. string.match(first[1][1], '^(%d+)'))
  end
  append(s, '{"type":"message:deleted","room":"' .. room .. '","seq":' .. s .. ',"msg_id":"' .. id ..
    '","by":"' .. ARGV[12] .. '","ts":' .. ts .. '}')
  return {1, seq, tonumber(ts), 0, 0}
end
-- react
local xk, rk = 'x:' .. ARGV[12] .. ' ' .. ARGV[14], 'r:' .. ARGV[14]
local has = redis.call('HEXISTS', st, xk) == 1
local add = ARGV[15] == '1'
if has == add then
  return {2, 0, tonumber(ts), tonumber(redis.call('HGET', st, rk) or '0'), 0}
end
if add and not redis.call('HGET', st, rk) and tonumber(m[5] or '0') >= tonumber(ARGV[16]) then
  return {-10}
end
local seq = next_seq()
if not seq then return {-1} end
local s = string.format('%d', seq)
local c
if add then
  redis.call('HSET', st, xk, 1)
  c = redis.call('HINCRBY', st, rk, 1)
  if c == 1 then redis.call('HINCRBY', st, 'nr', 1) end
else
  redis.call('HDEL', st, xk)
  c = redis.call('HINCRBY', st, rk, -1)
  if c <= 0 then
    redis.call('HDEL', st, rk)
    redis.call('HINCRBY', st, 'nr', -1)
    c = 0
  end
end
append(s, '{"type":"message:reaction","room":"' .. room .. '","seq":' .. s .. ',"msg_id":"' .. id ..
  '","emoji":' .. ARGV[13] .. ',"user":"' .. ARGV[12] .. '","add":' .. (add and 'true' or 'false') ..
  ',"count":' .. c .. ',"ts":' .. ts .. '}')
return {1, seq, tonumber(ts), c, 0}
