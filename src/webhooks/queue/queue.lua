-- The webhook queues: per queue a stream of events (fields n: sequence
-- number, i: event id, b: body), its sequence counter, the lease of the
-- replica delivering it and a hash of receivers' cursors. All four share a
-- hash tag, so they live on one shard of a cluster.
-- ARGV[1] op, then per op:
--   append  KEYS stream, counter; ARGV max length, then id, body pairs
--   lease   KEYS lease; ARGV owner, ttl ms: taken or kept, 1; 0 while
--           another owner holds it
--   release KEYS lease; ARGV owner
--   advance KEYS lease, cursors; ARGV owner, receiver, cursor: only while
--           the owner holds the lease (1), else 0
local op = ARGV[1]
if op == 'append' then
  local count = (#ARGV - 2) / 2
  local n = redis.call('INCRBY', KEYS[2], count) - count
  for i = 3, #ARGV, 2 do
    n = n + 1
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'n', n, 'i', ARGV[i], 'b', ARGV[i + 1])
  end
  return n
elseif op == 'lease' then
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= ARGV[2] then return 0 end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
elseif op == 'release' then
  if redis.call('GET', KEYS[1]) == ARGV[2] then redis.call('DEL', KEYS[1]) end
  return 1
elseif op == 'advance' then
  if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  return 1
end
return redis.error_reply('unknown op ' .. op)
