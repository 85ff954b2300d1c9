-- Cluster, one slot (the user's). KEYS: user hash, the user's route hash
-- in the action, ban key. ARGV: id, action, node, max_user_conns (0 = no
-- check, as for a restore).
-- Adds the user entry unless present. Returns 1 (first connection of the
-- user in the action), 0, -1 (already present: nothing done), -2 (over the
-- cap), -3 (banned).
local cap = tonumber(ARGV[4])
if cap >= 0 and redis.call('EXISTS', KEYS[3]) == 1 then return -3 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
if cap > 0 and redis.call('HLEN', KEYS[1]) >= cap then return -2 end
local first = redis.call('EXISTS', KEYS[2]) == 0
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
if first then return 1 end
return 0
