-- Reads a topic's log, deciding atomically whether a `since` can be
-- recovered from. A topic without a log gets one, empty, positioned at the
-- current time (ids are microseconds), so that every reader has a position
-- to resume from: the next id is above it, and a log lost with Redis
-- restarts above it too, which `start` then tells apart.
-- KEYS[1] log stream, KEYS[2] log meta hash
-- ARGV[1] 'position' | 'since' | 'last', ARGV[2] the id or count,
-- ARGV[3] max age (us), ARGV[4] max length
-- Returns {recovered (0|1), position, id1, payload1, id2, payload2, ...}
local mode = ARGV[1]
local meta = redis.call('HMGET', KEYS[2], 'last', 'oldest', 'start')
local last = meta[1]
local now = now_micros()
if not last then
  local sid = string.format('%.0f', now)
  redis.call('HSET', KEYS[2], 'start', sid, 'last', sid, 'oldest', sid)
  redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3]) / 1000))
  if mode == 'since' then return {0, sid} end
  return {1, sid}
end
if mode == 'position' then
  return {1, last}
end
-- Without a length to keep, trim knows the length only when it cut.
local cut = trim(KEYS[1], KEYS[2], nil, nil, now - tonumber(ARGV[3]), tonumber(meta[2]), now)
if cut then
  redis.call('HSET', KEYS[2], 'len', cut)
end
local max_len = tonumber(ARGV[4])
local entries
if mode == 'last' then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', math.min(tonumber(ARGV[2]), max_len))
  local n = #entries
  for i = 1, math.floor(n / 2) do
    entries[i], entries[n - i + 1] = entries[n - i + 1], entries[i]
  end
else
  local since = tonumber(ARGV[2])
  local start = tonumber(meta[3])
  local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
  if since < start or since > tonumber(last) or since < trimmed then
    return {0, last}
  end
  -- One more than the limit tells whether all of them are within it: the
  -- log may hold a few past it (trim.lua), which readers must not see.
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+', 'COUNT', max_len + 1)
  if #entries > max_len then
    return {0, last}
  end
end
local out = {1, last}
for _, entry in ipairs(entries) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][2]
end
return out
