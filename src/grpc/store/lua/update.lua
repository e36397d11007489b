-- KEYS[1] email index. ARGV id, name ('' keeps), email ('' keeps).
-- Returns {name, email, created_at}.
local user = 'rtchat:{users}:user:' .. ARGV[1]
local cur = redis.call('HMGET', user, 'name', 'email', 'created_at')
if not cur[1] then return redis.error_reply('NOT_FOUND') end
local name = ARGV[2] ~= '' and ARGV[2] or cur[1]
local email = ARGV[3] ~= '' and ARGV[3] or cur[2]
local old, new = string.lower(cur[2]), string.lower(email)
if new ~= old then
  if redis.call('HEXISTS', KEYS[1], new) == 1 then return redis.error_reply('EMAIL_TAKEN') end
  redis.call('HDEL', KEYS[1], old)
  redis.call('HSET', KEYS[1], new, ARGV[1])
end
redis.call('HSET', user, 'name', name, 'email', email)
return {name, email, cur[3]}
