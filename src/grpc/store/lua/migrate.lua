-- Moves a store written before its keys shared the {users} hash tag to
-- the tagged names, once, keeping every user and the id counter (RENAME
-- keeps values and expiries). Not run on a cluster, where the untagged
-- store could never have worked.
-- KEYS: old counter, old id index, old email index, then the new three.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local old = 'rtchat:user:' .. id
  if redis.call('EXISTS', old) == 1 then
    redis.call('RENAME', old, 'rtchat:{users}:user:' .. id)
  end
end
for i = 2, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + 3]) end
end
redis.call('RENAME', KEYS[1], KEYS[4])
return 1
