-- Appends a group of payloads to their topics' logs and publishes each,
-- atomically and in the given order: Redis runs a script alone, so log
-- order and publish order cannot differ. A replica sends what its posters
-- sent while all its calls were on their way as one group (see group.rs):
-- one command, one reply and one write to each subscriber instead of one
-- of each per message.
-- ARGV[1] PUBLISH, or SPUBLISH on a cluster (where every key and channel of
-- a group shares one slot), then five values per message: channel,
-- payload, max length, max age (us), and flags: 1 when it has an
-- idempotency key, 2 when it sets its log's expiry (the replica asks for
-- it now and then, expiry.rs says when; a log that is gone is made again
-- with it in any case).
-- KEYS per message, in the same order: its log stream and, with flag 1,
-- its idempotency key: if that key holds an id, the id is the answer and
-- nothing is stored or published.
-- Returns one entry per message: its id, or '!' and the error that stopped
-- that message alone (the others go on).
--
-- Every Redis call a script makes costs Redis about a microsecond, and so
-- does a little string work in Lua, so the usual message makes two
-- calls (XADD, which also cuts the log back, and PUBLISH) beside the
-- group's one TIME, and reads nothing: the log is the stream alone
-- (replay.lua says how `since` is decided from it).
local publish = ARGV[1]
-- The group's messages are stamped now, now + 1 µs, ... in order, so that
-- on one Redis no two messages share an id even across rooms (as when each
-- message had a script call, and a TIME, of its own): the group takes
-- longer than a microsecond a message, so the next group's TIME is past
-- them.
local time = redis.call('TIME')
local stamped = 0

local function append(log, idem, channel, payload, max_len, age, expire)
  if idem then
    local seen = redis.call('GET', idem)
    if seen then
      if expire then
        set_expiry(log, age)
      end
      return seen
    end
  end
  local at = stamp(time, stamped)
  local sid = add(log, max_len, at, 'p', payload, not expire)
  if not sid then
    -- Gone (expired, or lost with Redis): made again, with its expiry.
    sid = add(log, max_len, at, 'p', payload, false)
    expire = true
  end
  stamped = stamped + 1
  if expire then
    set_expiry(log, age)
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
  local flags = tonumber(ARGV[a + 4])
  local idem = nil
  if flags % 2 == 1 then
    idem = KEYS[k + 1]
  end
  local ok, result = pcall(append, KEYS[k], idem, ARGV[a], ARGV[a + 1],
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), flags >= 2)
  if ok then
    ids[#ids + 1] = result
  elseif type(result) == 'table' and result.err then
    ids[#ids + 1] = '!' .. result.err
  else
    ids[#ids + 1] = '!' .. tostring(result)
  end
  k = k + (idem and 2 or 1)
end
return ids
