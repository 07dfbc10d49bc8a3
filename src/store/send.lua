local maxlen, ttl = ARGV[1], ARGV[2]
local n_rate, win_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local nrooms = tonumber(ARGV[5])
local rkeys, pos = {}, {}
local k, a = 2, 5
for r = 1, nrooms do
  local n = tonumber(ARGV[a + 5])
  for j = k, k + 1 + 2 * n do
    if j ~= k + 1 and not pos[KEYS[j]] then
      rkeys[#rkeys + 1] = KEYS[j]
      pos[KEYS[j]] = #rkeys
    end
  end
  k, a = k + 2 + 2 * n, a + 5 + 6 * n
end
local got = redis.call('MGET', unpack(rkeys))
local now
local counters, level, taken, seen, res = {}, {}, {}, {}, {}
k, a = 2, 5
for r = 1, nrooms do
  local kseq, kstream = KEYS[k], KEYS[k + 1]
  local n = tonumber(ARGV[a + 5])
  local cur = counters[kseq] or got[pos[kseq]]
  local out = {}
  if cur then
    cur = tonumber(cur)
  elseif ARGV[a + 2] ~= '' then
    cur = tonumber(ARGV[a + 2])
    local last = redis.call('XREVRANGE', kstream, '+', '-', 'COUNT', 1)
    if last[1] then
      local s = tonumber(string.match(last[1][1], '^(%d+)'))
      if s > cur then cur = s end
    end
  end
  if not cur then
    out[1] = -1
  else
    local evs = {}
    for i = 1, n do
      local ik, bk, b = KEYS[k + 2 * i], KEYS[k + 1 + 2 * i], a + 5 + 6 * (i - 1)
      local ack = seen[ik] or got[pos[ik]]
      if ack then
        out[#out + 1] = 0
        out[#out + 1] = ack
      else
        now = now or bucket_now()
        local l = level[bk] or bucket_level(got[pos[bk]], now, n_rate, win_ms)
        if l < win_ms then
          level[bk] = l
          out[#out + 1] = -2
          out[#out + 1] = string.format('%d', math.ceil((win_ms - l) / n_rate))
        else
          level[bk] = l - win_ms
          taken[bk] = true
          cur = cur + 1
          local seq = string.format('%d', cur)
          local ev = ARGV[b + 1] .. seq .. ARGV[b + 3]
          if ARGV[b + 2] ~= '' then ev = ARGV[b + 1] .. seq .. ARGV[b + 2] .. seq .. ARGV[b + 3] end
          redis.call('XADD', kstream, 'MAXLEN', maxlen, seq .. '-0', 'e', ev)
          ack = '"msg_id":"' .. ARGV[b + 4] .. '","seq":' .. seq .. ',"ts":' .. ARGV[b + 5]
          redis.call('SET', ik, ack, 'EX', ARGV[b + 6])
          seen[ik] = ack
          evs[#evs + 1] = ev
          out[#out + 1] = 1
          out[#out + 1] = ack
        end
      end
    end
    counters[kseq] = cur
    if #evs > 0 then
      local first = cur - #evs + 1
      for j = 1, #evs, 16 do
        redis.call('XADD', KEYS[1], '*', 't', ARGV[a + 3], 'r', ARGV[a + 4],
          's', string.format('%d', first + j - 1),
          'e', table.concat(evs, '\n', j, math.min(#evs, j + 16 - 1)))
      end
      redis.call('SET', kseq, string.format('%d', cur))
      redis.call('EXPIRE', kstream, ttl)
      redis.call('PUBLISH', ARGV[a + 1], table.concat(evs, '\n'))
    end
  end
  res[r] = out
  k, a = k + 2 + 2 * n, a + 5 + 6 * n
end
for bk in pairs(taken) do bucket_put(bk, level[bk], now, n_rate, win_ms) end
return res
