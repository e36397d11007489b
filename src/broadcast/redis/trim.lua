-- Shared by the log scripts. Trims a log to its length and age limits and
-- records the newest id trimmed in the meta hash: streams do not remember
-- trimmed ids, and a `since` below that id has lost messages.
-- (stream key, meta key, max length or nil, oldest id to keep)
local function trim(log, meta, max_len, keep_from)
  local trimmed = nil
  if max_len then
    local over = redis.call('XLEN', log) - max_len
    if over > 0 then
      local old = redis.call('XRANGE', log, '-', '+', 'COUNT', over)
      trimmed = old[#old][1]
      redis.call('XTRIM', log, 'MAXLEN', max_len)
    end
  end
  if keep_from > 0 then
    local bound = string.format('%.0f', keep_from) .. '-0'
    local old = redis.call('XREVRANGE', log, '(' .. bound, '-', 'COUNT', 1)
    if #old > 0 then
      trimmed = old[1][1]
      redis.call('XTRIM', log, 'MINID', bound)
    end
  end
  if trimmed then
    redis.call('HSET', meta, 'trimmed', string.match(trimmed, '^(%d+)'))
  end
end

local function now_micros()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
