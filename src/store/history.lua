local last = redis.call('GET', KEYS[1])
if not last then return {-1} end
local out = {tonumber(last)}
local hi = '+'
if ARGV[2] ~= '-1' then hi = ARGV[2] .. '-0' end
if ARGV[1] == '-1' then
  local ev = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', ARGV[3])
  for i = #ev, 1, -1 do out[#out + 1] = ev[i][2][2] end
else
  local ev = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', hi, 'COUNT', ARGV[3])
  for i = 1, #ev do out[#out + 1] = ev[i][2][2] end
end
return out
