-- KEYS[1] id index, KEYS[2] email index. ARGV id.
-- Returns {name, email, created_at} as they were.
local user = 'rtchat:{users}:user:' .. ARGV[1]
local cur = redis.call('HMGET', user, 'name', 'email', 'created_at')
if not cur[1] then return redis.error_reply('NOT_FOUND') end
redis.call('DEL', user)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], string.lower(cur[2]))
return cur
