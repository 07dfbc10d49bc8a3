local last = redis.call('GET', KEYS[1])
if not last then return {-1} end
local out = {tonumber(last)}
local hi, lo, hi2 = '+', nil, nil
if ARGV[2] ~= '-1' then hi = ARGV[2] .. '-0' end
if ARGV[1] == '-1' then
  local ev = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', ARGV[3])
  for i = #ev, 1, -1 do out[#out + 1] = ev[i][2][2] end
  if ev[1] then lo, hi2 = ev[#ev][1], ev[1][1] end
else
  local ev = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', hi, 'COUNT', ARGV[3])
  for i = 1, #ev do out[#out + 1] = ev[i][2][2] end
  if ev[1] then lo, hi2 = ev[1][1], ev[#ev][1] end
end
-- The seqs of the events of deleted messages among them (their
-- message:new, and their edits): the caller shows them without content.
local del = {}
if lo then
  local d = redis.call('ZRANGEBYSCORE', KEYS[3], string.match(lo, '^(%d+)'),
    string.match(hi2, '^(%d+)'), 'WITHSCORES')
  for i = 2, #d, 2 do del[#del + 1] = tonumber(d[i]) end
  for i = 2, #out do
    local id = string.match(out[i], '^{"type":"message:edited","room":"[^"]*","seq":%d+,"msg_id":"([^"]*)"')
    if id and redis.call('ZSCORE', KEYS[3], id) then
      del[#del + 1] = tonumber(string.match(out[i], '"seq":(%d+)'))
    end
  end
end
out[#out + 1] = del
return out
