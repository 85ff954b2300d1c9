-- Cluster, one slot (the action's). KEYS: action hash, action route hash.
-- ARGV: id, node. Removes the entry if present; returns 1 if it did.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1
