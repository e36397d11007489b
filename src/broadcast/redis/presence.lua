-- Presence of a topic: a hash of member -> "<instance>\n<info>", where
-- <instance> is the replica that holds the member and keeps the key
-- rtchat:alive:<instance> alive while it runs. Joins and leaves are
-- published on the topic's channel as "+ <info>" and "- <info>".
-- KEYS[1] presence hash; ARGV[1] op, ARGV[2] channel, then per op:
--   add:    member, instance, info, alive ttl (ms)
--   remove: member
--   list:   (none) -> infos of members whose replica is alive; the others
--           are removed and announced as left.
local op, channel = ARGV[1], ARGV[2]
local function info_of(value)
  return string.sub(value, string.find(value, '\n', 1, true) + 1)
end
if op == 'add' then
  -- The holder's heartbeat is set here too, so a member is never listed as
  -- dead in the moment before its replica's first heartbeat.
  redis.call('SET', 'rtchat:alive:' .. ARGV[4], '1', 'PX', ARGV[6])
  local new = redis.call('HSET', KEYS[1], ARGV[3], ARGV[4] .. '\n' .. ARGV[5])
  if new == 1 then redis.call('PUBLISH', channel, '+ ' .. ARGV[5]) end
  return new
elseif op == 'remove' then
  local value = redis.call('HGET', KEYS[1], ARGV[3])
  if not value then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[3])
  redis.call('PUBLISH', channel, '- ' .. info_of(value))
  return 1
end
local out, alive = {}, {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local value = all[i + 1]
  local instance = string.sub(value, 1, string.find(value, '\n', 1, true) - 1)
  if alive[instance] == nil then
    alive[instance] = redis.call('EXISTS', 'rtchat:alive:' .. instance) == 1
  end
  if alive[instance] then
    out[#out + 1] = info_of(value)
  else
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', channel, '- ' .. info_of(value))
  end
end
return out
