-- Appends one payload to a topic's log and publishes it, atomically: Redis
-- runs a script alone, so log order and publish order cannot differ.
-- KEYS[1] log stream, KEYS[2] log meta hash, KEYS[3] (optional) the
-- publish's idempotency key: if it holds an id, that id is the answer and
-- nothing is stored or published
-- ARGV[1] channel, ARGV[2] payload, ARGV[3] max length, ARGV[4] max age (us),
-- ARGV[5] PUBLISH, or SPUBLISH on a cluster (the channel shares the keys' slot)
--
-- Every Redis call a script makes costs about a microsecond, so the usual
-- message makes five: TIME, HMGET and HSET of the meta hash, XADD and
-- PUBLISH. The meta hash counts the stream's entries (`len`, so no XLEN)
-- and remembers when the keys' expiry was last pushed back (`renewed`).
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    return seen
  end
end
local now = now_micros()
local meta = redis.call('HMGET', KEYS[2], 'last', 'oldest', 'len', 'renewed')
local last = tonumber(meta[1] or '0')
local id = math.max(now, last + 1)
local sid = string.format('%.0f', id)
local age = tonumber(ARGV[4])
redis.call('XADD', KEYS[1], sid .. '-0', 'p', ARGV[2])
local oldest = tonumber(meta[2])
local len = tonumber(meta[3])
if last == 0 then
  oldest, len = id, nil
elseif len then
  len = len + 1
end
len = trim(KEYS[1], KEYS[2], tonumber(ARGV[3]), len, now - age, oldest, now)
-- An idle topic's log disappears once its last message is older than the
-- age limit (and at most half that again): the expiry is pushed back to
-- 1.5 times the age whenever half the age has passed since it last was.
local renewed = tonumber(meta[4] or '0')
if now - renewed >= age / 2 then
  local ttl = math.ceil(age * 1.5 / 1000)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  renewed = now
end
if last == 0 then
  redis.call('HSET', KEYS[2], 'start', sid, 'last', sid, 'oldest', sid, 'len', len,
    'renewed', string.format('%.0f', renewed))
else
  redis.call('HSET', KEYS[2], 'last', sid, 'len', len, 'renewed', string.format('%.0f', renewed))
end
redis.call(ARGV[5], ARGV[1], sid .. ' ' .. ARGV[2])
if KEYS[3] then
  redis.call('SET', KEYS[3], sid, 'PX', math.ceil(age / 1000))
end
return sid
