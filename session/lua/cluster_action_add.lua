-- Cluster, one slot (the action's). KEYS: action hash, action route hash.
-- ARGV: id, user_id, node. Adds the entry unless present; returns 1 if it did.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
return 1
