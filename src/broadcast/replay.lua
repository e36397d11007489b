-- Reads a topic's log after an id, deciding atomically whether that id can
-- be recovered from.
-- KEYS[1] log stream, KEYS[2] log meta hash
-- ARGV[1] since ('' for the position only), ARGV[2] max age (us)
-- Returns {recovered (0|1), last id or '', id1, payload1, id2, payload2, ...}
local start = redis.call('HGET', KEYS[2], 'start')
local last = redis.call('HGET', KEYS[2], 'last')
if not last then
  if ARGV[1] == '' then return {1, ''} end
  return {0, ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local age = tonumber(ARGV[2])
if now > age then
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f', now - age) .. '-0')
end
if ARGV[1] == '' then return {1, last} end
local since = tonumber(ARGV[1])
if since < tonumber(start) or since > tonumber(last) then return {0, last} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then
    local trimmed = tonumber(string.match(info[i + 1], '^(%d+)'))
    if trimmed > since then return {0, last} end
  end
end
local out = {1, last}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '+')) do
  out[#out + 1] = string.match(entry[1], '^(%d+)')
  out[#out + 1] = entry[2][2]
end
return out
