-- Presence of a topic: a hash of member -> "<holders>\n<info>", where
-- <holders> are the replica instances holding the member (space
-- separated: one user may be in a room through sessions on two replicas at
-- once, as a Socket.IO client recovering on another replica before its old
-- session ended), each keeping its heartbeat key alive while it runs. A
-- member is present while any holder is. Joins and leaves are published on
-- the topic's channel as "+ <info>" and "- <info>": the first holder's
-- arrival and the last one's departure.
-- Only the topic's own keys are touched (the hash and the channel share a
-- slot on a cluster): whether an instance is alive is decided by the
-- caller, which reads the heartbeat keys on their own shards.
-- KEYS[1] presence hash; ARGV[1] op, ARGV[2] channel, ARGV[3] PUBLISH or
-- SPUBLISH, then per op:
--   add:    member, instance, info. Returns 1 if the member is new.
--   remove: member, instance: that instance no longer holds the member (a
--           late removal leaves the other holders' claim alone). Returns
--           the entry's info if that was its last holder, or nil.
--   drop:   dead instances: they hold nothing any more
--   keep:   instance, then the members it holds: it holds no other
--           (leaves that never reached Redis)
--   drop and keep return the infos of the entries left without holders.
local op, channel, publish = ARGV[1], ARGV[2], ARGV[3]
local function split(value)
  local nl = string.find(value, '\n', 1, true)
  local holders = {}
  for holder in string.gmatch(string.sub(value, 1, nl - 1), '%S+') do
    holders[#holders + 1] = holder
  end
  return holders, string.sub(value, nl + 1)
end
local function without(holders, gone)
  local kept = {}
  for _, holder in ipairs(holders) do
    if not gone(holder) then kept[#kept + 1] = holder end
  end
  return kept
end
local function other_than(holders, instance)
  return without(holders, function(holder) return holder == instance end)
end
-- Writes a member's holders, or removes (and announces as left)
-- a member none holds; its info then, else nil.
local function store(member, holders, info)
  if #holders > 0 then
    redis.call('HSET', KEYS[1], member, table.concat(holders, ' ') .. '\n' .. info)
    return nil
  end
  redis.call('HDEL', KEYS[1], member)
  redis.call(publish, channel, '- ' .. info)
  return info
end
-- Takes every instance `gone(member, instance)` picks off its members'
-- holders; the infos of the members left without any, for the caller's
-- webhooks.
local function release_where(gone)
  local all = redis.call('HGETALL', KEYS[1])
  local dropped = {}
  for i = 1, #all, 2 do
    local member = all[i]
    local holders, info = split(all[i + 1])
    local kept = without(holders, function(holder) return gone(member, holder) end)
    if #kept < #holders then
      dropped[#dropped + 1] = store(member, kept, info)
    end
  end
  return dropped
end
if op == 'add' then
  local member, instance, info = ARGV[4], ARGV[5], ARGV[6]
  local value = redis.call('HGET', KEYS[1], member)
  local holders = {}
  if value then holders = other_than(split(value), instance) end
  holders[#holders + 1] = instance
  store(member, holders, info)
  if value then return 0 end
  redis.call(publish, channel, '+ ' .. info)
  return 1
elseif op == 'remove' then
  local member, instance = ARGV[4], ARGV[5]
  local value = redis.call('HGET', KEYS[1], member)
  if not value then return false end
  local holders, info = split(value)
  local kept = other_than(holders, instance)
  if #kept == #holders then return false end
  return store(member, kept, info) or false
elseif op == 'keep' then
  local instance, held = ARGV[4], {}
  for i = 5, #ARGV do held[ARGV[i]] = true end
  return release_where(function(member, holder)
    return holder == instance and not held[member]
  end)
end
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
return release_where(function(_, holder) return dead[holder] end)
