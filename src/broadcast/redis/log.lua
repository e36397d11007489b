-- Shared by the log scripts. A topic's log is one stream of entries
-- `<id>-0` (ids are microseconds), each with its payload as field `p`; a
-- log made by a reader for a topic without one starts with a marker entry
-- (field `m`, no payload, never read back), so that its position is an
-- entry too. The newest entry is never trimmed: its id is the log's
-- position. replay.lua says how a `since` is decided from this alone.

local function id_of(entry_id)
  return string.match(entry_id, '^(%d+)')
end

-- The id `offset` microseconds after a TIME reply, as text, written from
-- TIME's digits: Lua 5.1 prints numbers of 16 digits with an exponent,
-- and string.format cost Redis a tenth of a message.
local function stamp(time, offset)
  local seconds, micros = time[1], time[2]
  if offset == 0 then
    return seconds .. ('000000'):sub(#micros + 1) .. micros
  end
  local u = tonumber(micros) + offset
  local text = tostring(u % 1000000)
  return tostring(tonumber(seconds) + math.floor(u / 1000000)) .. ('000000'):sub(#text + 1) .. text
end

-- One past the newest id the stream has given out, for when a stamp is
-- not above it (a clock stepped back, a failover to a Redis whose clock is
-- behind, or a stream emptied by an earlier version).
local function after_last(log)
  local info = redis.call('XINFO', 'STREAM', log)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      return string.format('%.0f', tonumber(id_of(info[i + 1])) + 1)
    end
  end
  error('no last-generated-id')
end

-- A log lives one and a half history ages (`age` in microseconds) after
-- its expiry was last set.
local function set_expiry(log, age)
  redis.call('PEXPIRE', log, math.ceil(age * 1.5 / 1000))
end

-- Appends an entry at `sid`, or just past the log's newest id when `sid`
-- is not above it; returns the id used. With `existing`, only to a log
-- that exists (NOMKSTREAM): false when there is none.
--
-- The log keeps at least max_len + 1 entries, so that a `since` at the
-- oldest still finds itself with max_len after it, and the new one always
-- stays. XADD cuts it back itself, by whole nodes (`~`): at most one node
-- more (by Redis's defaults up to 100 entries or 4 KiB, or one larger
-- message) that readers never see, for no extra call and no cut inside a
-- node (an exact cut cost 4.0 against 2.3 µs a message; a length check
-- with a cut now and then, one call more).
local function add(log, max_len, sid, field, value, existing)
  local keep = max_len + 1
  local added
  if existing then
    added = redis.pcall('XADD', log, 'NOMKSTREAM', 'MAXLEN', '~', keep, sid .. '-0', field, value)
    if not added then
      return false
    end
  else
    added = redis.pcall('XADD', log, 'MAXLEN', '~', keep, sid .. '-0', field, value)
  end
  if type(added) == 'table' and added.err then
    sid = after_last(log)
    redis.call('XADD', log, 'MAXLEN', '~', keep, sid .. '-0', field, value)
  end
  return sid
end
