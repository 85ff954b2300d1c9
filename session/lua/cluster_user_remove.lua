-- Cluster, one slot (the user's). KEYS: user hash, the user's route hash
-- in the action. ARGV: id, node. Deletes the user entry; returns -1 if it
-- was not there (someone else removed the binding), else last (1/0).
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
return 0
