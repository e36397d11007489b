-- KEYS[1] id counter, KEYS[2] id index, KEYS[3] email index
-- ARGV name, email, created_at. Returns the new id.
local key = string.lower(ARGV[2])
if redis.call('HEXISTS', KEYS[3], key) == 1 then return redis.error_reply('EMAIL_TAKEN') end
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', 'rtchat:{users}:user:' .. id, 'name', ARGV[1], 'email', ARGV[2], 'created_at', ARGV[3])
redis.call('ZADD', KEYS[2], id, id)
redis.call('HSET', KEYS[3], key, id)
return id
