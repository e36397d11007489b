-- Appends a group of payloads to their topics' logs and publishes each,
-- atomically and in the given order: Redis runs a script alone, so log
-- order and publish order cannot differ. A replica sends what its posters
-- sent while all its calls were on their way as one group (see group.rs):
-- one command, one reply and one write to each subscriber instead of one
-- of each per message.
-- ARGV[1] PUBLISH, or SPUBLISH on a cluster (where every key and channel of
-- a group shares one slot), then five values per message: channel,
-- payload, max length, max age (us), and 1 when it has an idempotency key.
-- KEYS per message, in the same order: its log stream, its meta hash and,
-- with that flag, its idempotency key: if that key holds an id, the id is
-- the answer and nothing is stored or published.
-- Returns one entry per message: its id, or '!' and the error that stopped
-- that message alone (the others go on).
--
-- Every Redis call a script makes costs about a microsecond, so the usual
-- message makes four beside the group's one TIME: HMGET and HSET of the
-- meta hash, XADD and PUBLISH. The meta hash counts the stream's entries
-- (`len`, so no XLEN) and remembers when the keys' expiry was last pushed
-- back (`renewed`).
local publish = ARGV[1]
-- The group's messages are stamped now, now + 1 µs, ... in order, so that
-- on one Redis no two messages share an id even across rooms (as when each
-- message had a script call, and a TIME, of its own): the group takes
-- longer than a microsecond a message, so the next group's TIME is past
-- them. A stamp's text is written from TIME's digits: Lua 5.1 prints
-- numbers of 16 digits with an exponent, and string.format cost Redis a
-- tenth of a message.
local time = redis.call('TIME')
local seconds, micros = tonumber(time[1]), tonumber(time[2])
local now = seconds * 1000000 + micros
local stamped = 0
local function stamp_text(offset)
  local u = micros + offset
  local text = tostring(u % 1000000)
  return tostring(seconds + math.floor(u / 1000000)) .. string.rep('0', 6 - #text) .. text
end

local function append(log, meta_key, idem, channel, payload, max_len, age)
  if idem then
    local seen = redis.call('GET', idem)
    if seen then
      return seen
    end
  end
  local meta = redis.call('HMGET', meta_key, 'last', 'oldest', 'len', 'renewed')
  local last = tonumber(meta[1] or '0')
  local offset = stamped
  stamped = stamped + 1
  local id, sid = now + offset, nil
  if last >= id then
    id = last + 1
    sid = string.format('%.0f', id)
  else
    sid = stamp_text(offset)
  end
  redis.call('XADD', log, sid .. '-0', 'p', payload)
  local oldest = tonumber(meta[2])
  local len = tonumber(meta[3])
  if last == 0 then
    oldest, len = id, nil
  elseif len then
    len = len + 1
  end
  len = trim(log, meta_key, max_len, len, now - age, oldest, now)
  -- An idle topic's log disappears once its last message is older than the
  -- age limit (and at most half that again): the expiry is pushed back to
  -- 1.5 times the age whenever half the age has passed since it last was.
  -- (After the HSET: a new topic's meta hash exists only from there on.)
  local renew = now - tonumber(meta[4] or '0') >= age / 2
  if last == 0 then
    redis.call('HSET', meta_key, 'start', sid, 'oldest', sid, 'last', sid, 'len', len,
      'renewed', stamp_text(0))
  elseif renew then
    redis.call('HSET', meta_key, 'last', sid, 'len', len, 'renewed', stamp_text(0))
  else
    redis.call('HSET', meta_key, 'last', sid, 'len', len)
  end
  if renew then
    local ttl = math.ceil(age * 1.5 / 1000)
    redis.call('PEXPIRE', log, ttl)
    redis.call('PEXPIRE', meta_key, ttl)
  end
  redis.call(publish, channel, sid .. ' ' .. payload)
  if idem then
    redis.call('SET', idem, sid, 'PX', math.ceil(age / 1000))
  end
  return sid
end

local ids = {}
local k = 1
for a = 2, #ARGV, 5 do
  local idem = nil
  if ARGV[a + 4] == '1' then
    idem = KEYS[k + 2]
  end
  local ok, result = pcall(append, KEYS[k], KEYS[k + 1], idem, ARGV[a], ARGV[a + 1],
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
  if ok then
    ids[#ids + 1] = result
  elseif type(result) == 'table' and result.err then
    ids[#ids + 1] = '!' .. result.err
  else
    ids[#ids + 1] = '!' .. tostring(result)
  end
  k = k + (idem and 3 or 2)
end
return ids
