-- Shared by the log scripts. Trims a log to its length and age limits and
-- records the newest id trimmed in the meta hash: streams do not remember
-- trimmed ids, and a `since` below that id has lost messages.
--
-- Both limits are kept exactly as readers see them, at little cost per
-- message:
-- - Length: the stream may hold up to max_len / 16 entries more than
--   max_len before it is cut back to max_len, so the cut (one read, one
--   XTRIM) is paid once per that many messages, not per message. Readers
--   never see the spare entries (replay.lua counts from the newest).
-- - Age: the meta hash keeps `oldest`, never above the oldest entry's id;
--   until the age bound passes it there is nothing to trim and nothing is
--   read. When it does, the trim finds the real oldest entry again.

local function slack(max_len)
  return math.max(1, math.floor(max_len / 16))
end

local function id_of(entry_id)
  return string.match(entry_id, '^(%d+)')
end

-- (stream, meta, max length or nil, the stream's length when known,
-- oldest id to keep, meta's `oldest` or nil when unknown, now).
-- Returns the stream's length after it: read or given with a max length,
-- or when the age cut changed it; else nil (unknown, and not changed).
local function trim(log, meta, max_len, len, keep_from, oldest, now)
  local trimmed = nil
  if max_len then
    len = len or redis.call('XLEN', log)
    local over = len - max_len
    if over > slack(max_len) then
      local old = redis.call('XRANGE', log, '-', '+', 'COUNT', over)
      trimmed = old[#old][1]
      redis.call('XTRIM', log, 'MAXLEN', max_len)
      len = max_len
    end
  end
  if keep_from > 0 and (oldest == nil or oldest < keep_from) then
    local bound = string.format('%.0f', keep_from) .. '-0'
    local old = redis.call('XREVRANGE', log, '(' .. bound, '-', 'COUNT', 1)
    if #old > 0 then
      trimmed = old[1][1]
      redis.call('XTRIM', log, 'MINID', bound)
      len = redis.call('XLEN', log)
    end
    local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
    -- An empty log's next entry is newer than now.
    local new_oldest = (#first > 0) and id_of(first[1][1]) or string.format('%.0f', now)
    redis.call('HSET', meta, 'oldest', new_oldest)
  end
  if trimmed then
    redis.call('HSET', meta, 'trimmed', id_of(trimmed))
  end
  return len
end

local function now_micros()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
