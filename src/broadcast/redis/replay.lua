-- Reads a topic's log, deciding atomically whether a `since` can be
-- recovered from. A topic without a log gets one holding only a marker at
-- the current time (ids are microseconds), so that every reader has a
-- position to resume from: the next id is above it, and a log lost with
-- Redis restarts above it too.
-- KEYS[1] log stream
-- ARGV[1] 'position' | 'since' | 'last', ARGV[2] the id or count,
-- ARGV[3] max age (us), ARGV[4] max length
-- Returns {recovered (0|1), position, id1, payload1, id2, payload2, ...}
--
-- A `since` is recovered from when it is the position, or an entry still
-- in the log with at most max length entries after it: trims only ever cut
-- the oldest entries, so every entry after one still present is present.
-- A `since` not in the log was trimmed (so may the entries after it), or
-- comes from a log that Redis lost, or from the future: not recovered.
local mode, log = ARGV[1], KEYS[1]
local age, max_len = tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call('TIME')
local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
if #top == 0 then
  local sid = add(log, max_len, stamp(time, 0), 'm', '')
  set_expiry(log, age)
  if mode == 'since' then return {0, sid} end
  return {1, sid}
end
local position = id_of(top[1][1])
if mode == 'position' then
  return {1, position}
end
-- Entries past the age limit go, all but the newest (the position), which
-- readers do not see either.
local keep_from = tonumber(time[1]) * 1000000 + tonumber(time[2]) - age
local newest = tonumber(position)
if keep_from > 0 then
  redis.call('XTRIM', log, 'MINID', string.format('%.0f', math.min(keep_from, newest)) .. '-0')
end
local out = {1, position}
local entries
if mode == 'last' then
  local n = math.min(tonumber(ARGV[2]), max_len)
  entries = {}
  if n > 0 then
    -- One more, for the marker that may be among them.
    local newest_first = redis.call('XREVRANGE', log, '+', '-', 'COUNT', n + 1)
    for i = #newest_first, 1, -1 do
      local entry = newest_first[i]
      if entry[2][1] == 'p' and tonumber(id_of(entry[1])) >= keep_from then
        entries[#entries + 1] = entry
      end
    end
    if #entries > n then
      table.remove(entries, 1)
    end
  end
else
  local since = ARGV[2]
  if since == position then
    return out
  end
  if tonumber(since) > newest then
    return {0, position}
  end
  -- The since entry itself, then one more than the limit tells whether all
  -- that follow are within it (a log written with a larger limit may hold
  -- more).
  entries = redis.call('XRANGE', log, since .. '-0', '+', 'COUNT', max_len + 2)
  if #entries == 0 or id_of(entries[1][1]) ~= since or #entries > max_len + 1 then
    return {0, position}
  end
  table.remove(entries, 1)
end
for _, entry in ipairs(entries) do
  out[#out + 1] = id_of(entry[1])
  out[#out + 1] = entry[2][2]
end
return out
