-- Appends one payload to a topic's log and publishes it, atomically: Redis
-- runs a script alone, so log order and publish order cannot differ.
-- KEYS[1] log stream, KEYS[2] log meta hash
-- ARGV[1] channel, ARGV[2] payload, ARGV[3] max length, ARGV[4] max age (us)
local now = now_micros()
local meta = redis.call('HMGET', KEYS[2], 'last', 'oldest')
local last = tonumber(meta[1] or '0')
local id = math.max(now, last + 1)
local sid = string.format('%.0f', id)
if last == 0 then
  redis.call('HSET', KEYS[2], 'start', sid, 'last', sid, 'oldest', sid)
  meta[2] = sid
else
  redis.call('HSET', KEYS[2], 'last', sid)
end
redis.call('XADD', KEYS[1], sid .. '-0', 'p', ARGV[2])
local age = tonumber(ARGV[4])
trim(KEYS[1], KEYS[2], tonumber(ARGV[3]), now - age, tonumber(meta[2]), now)
-- An idle topic's log disappears with its last message's age; a later
-- `since` into it is then reported as not recovered.
local ttl = math.ceil(age / 1000)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PUBLISH', ARGV[1], sid .. ' ' .. ARGV[2])
return sid
