-- Reads a topic's log, deciding atomically whether a `since` can be
-- recovered from. A topic without a log gets one, empty, positioned at the
-- current time (ids are microseconds), so that every reader has a position
-- to resume from: the next id is above it, and a log lost with Redis
-- restarts above it too, which `start` then tells apart.
-- KEYS[1] log stream, KEYS[2] log meta hash
-- ARGV[1] 'position' | 'since' | 'last', ARGV[2] the id or count, ARGV[3] max age (us)
-- Returns {recovered (0|1), position, id1, payload1, id2, payload2, ...}
local mode = ARGV[1]
local last = redis.call('HGET', KEYS[2], 'last')
if not last then
  local now = string.format('%.0f', now_micros())
  redis.call('HSET', KEYS[2], 'start', now, 'last', now)
  redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[3]) / 1000))
  if mode == 'since' then return {0, now} end
  return {1, now}
end
trim(KEYS[1], KEYS[2], nil, now_micros() - tonumber(ARGV[3]))
local entries
if mode == 'position' then
  return {1, last}
elseif mode == 'last' then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', tonumber(ARGV[2]))
  local n = #entries
  for i = 1, math.floor(n / 2) do
    entries[i], entries[n - i + 1] = entries[n - i + 1], entries[i]
  end
else
  local since = tonumber(ARGV[2])
  local start = tonumber(redis.call('HGET', KEYS[2], 'start'))
  local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
  if since < start or since > tonumber(last) or since < trimmed then
    return {0, last}
  end
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2] .. '-0', '+')
end
local out = {1, last}
for _, entry in ipairs(entries) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][2]
end
return out
