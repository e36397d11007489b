-- Presence of a topic: a hash of member -> "<instance>\n<info>", where
-- <instance> is the replica that holds the member and keeps its heartbeat
-- key alive while it runs. Joins and leaves are published on the topic's
-- channel as "+ <info>" and "- <info>".
-- Only the topic's own keys are touched (the hash and the channel share a
-- slot on a cluster): whether an instance is alive is decided by the
-- caller, which reads the heartbeat keys on their own shards.
-- KEYS[1] presence hash; ARGV[1] op, ARGV[2] channel, ARGV[3] PUBLISH or
-- SPUBLISH, then per op:
--   add:    member, instance, info
--   remove: member, instance: only while that instance holds the entry (the
--           member may have reconnected to another replica meanwhile, and a
--           late removal must not take that entry away)
--           Returns the removed entry's info, or nil.
--   drop:   dead instances: their members are removed and announced as left
--   keep:   instance, then the members it holds: its other entries are
--           removed and announced as left (leaves that never reached Redis)
--   drop and keep return the infos of the entries they removed.
local op, channel, publish = ARGV[1], ARGV[2], ARGV[3]
local function split(value)
  local nl = string.find(value, '\n', 1, true)
  return string.sub(value, 1, nl - 1), string.sub(value, nl + 1)
end
-- Removes (and announces as left) every entry `gone(member, instance)`
-- picks; their infos, for the caller's webhooks.
local function drop_where(gone)
  local all = redis.call('HGETALL', KEYS[1])
  local dropped = {}
  for i = 1, #all, 2 do
    local instance, info = split(all[i + 1])
    if gone(all[i], instance) then
      redis.call('HDEL', KEYS[1], all[i])
      redis.call(publish, channel, '- ' .. info)
      dropped[#dropped + 1] = info
    end
  end
  return dropped
end
if op == 'add' then
  local new = redis.call('HSET', KEYS[1], ARGV[4], ARGV[5] .. '\n' .. ARGV[6])
  if new == 1 then redis.call(publish, channel, '+ ' .. ARGV[6]) end
  return new
elseif op == 'remove' then
  local value = redis.call('HGET', KEYS[1], ARGV[4])
  if not value then return false end
  local holder, info = split(value)
  if holder ~= ARGV[5] then return false end
  redis.call('HDEL', KEYS[1], ARGV[4])
  redis.call(publish, channel, '- ' .. info)
  return info
elseif op == 'keep' then
  local held = {}
  for i = 5, #ARGV do held[ARGV[i]] = true end
  return drop_where(function(member, instance)
    return instance == ARGV[4] and not held[member]
  end)
end
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
return drop_where(function(_, instance) return dead[instance] end)
