-- KEYS[1] id index. ARGV after id, limit.
-- Returns {id, name, email, created_at, id, ...} in id order.
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])) do
  local f = redis.call('HMGET', 'rtchat:{users}:user:' .. id, 'name', 'email', 'created_at')
  if f[1] then
    out[#out + 1] = id
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
    out[#out + 1] = f[3]
  end
end
return out
