-- ARGV: prefix, id, user_id, action, node, connected_at, max_user_conns.
-- Returns 1 (first connection of the user in the action), 0, or -2 when
-- the user already has max_user_conns connections (nothing written then),
-- -3 when the user is banned.
local id, user, action, node, at = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[7])
if redis.call('EXISTS', p .. 'ban:' .. user) == 1 then return -3 end
unbind(id)
if cap > 0 and redis.call('HLEN', p .. 'user:' .. user) >= cap then return -2 end
if write(id, user, action, node, at) then return 1 end
return 0
