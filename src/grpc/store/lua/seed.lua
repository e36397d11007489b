-- Seeds a new, empty store exactly once, however many replicas run it at
-- the same time: the id counter exists from then on, even if every user is
-- later deleted.
-- KEYS[1] id counter, KEYS[2] id index (sorted set), KEYS[3] email index
-- ARGV: created_at, then name/email pairs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local id = 0
for i = 2, #ARGV, 2 do
  id = id + 1
  redis.call('HSET', 'rtchat:{users}:user:' .. id, 'name', ARGV[i], 'email', ARGV[i + 1], 'created_at', ARGV[1])
  redis.call('ZADD', KEYS[2], id, id)
  redis.call('HSET', KEYS[3], string.lower(ARGV[i + 1]), id)
end
redis.call('SET', KEYS[1], id)
return 1
