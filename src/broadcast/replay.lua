-- Reads a topic's log after an id, deciding atomically whether that id can
-- be recovered from.
-- KEYS[1] log stream, KEYS[2] log meta hash
-- ARGV[1] since ('' for the position only), ARGV[2] max age (us)
-- Returns {recovered (0|1), last id or '', id1, payload1, id2, payload2, ...}
local last = redis.call('HGET', KEYS[2], 'last')
if not last then
  if ARGV[1] == '' then return {1, ''} end
  return {0, ''}
end
trim(KEYS[1], KEYS[2], nil, now_micros() - tonumber(ARGV[2]))
if ARGV[1] == '' then return {1, last} end
local since = tonumber(ARGV[1])
local start = tonumber(redis.call('HGET', KEYS[2], 'start'))
local trimmed = tonumber(redis.call('HGET', KEYS[2], 'trimmed') or '0')
if since < start or since > tonumber(last) or since < trimmed then
  return {0, last}
end
local out = {1, last}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+')) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][2]
end
return out
