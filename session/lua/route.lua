-- Routes one message to the other nodes that hold its target: the
-- connections of a user in an action, or of an action.
-- KEYS[1]: the target's route hash (node -> connections there); on a single
-- Redis KEYS[2] is the sending node's heartbeat (absent: the store lost
-- this node's bindings, so nothing is published and {-1, 0} says so).
-- ARGV: channel prefix (the node id is appended), payload, sending node,
-- publish command (PUBLISH or SPUBLISH).
-- Returns {connections on nodes that took the message, connections on nodes
-- whose subscription is gone}. Cost: one HGETALL of a hash with one field
-- per node, one publish per other node: independent of connection counts.
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then return {-1, 0} end
local r = redis.call('HGETALL', KEYS[1])
local reached, missed = 0, 0
for i = 1, #r, 2 do
  if r[i] ~= ARGV[3] then
    local n = tonumber(r[i + 1])
    if redis.call(ARGV[4], ARGV[1] .. r[i], ARGV[2]) > 0 then
      reached = reached + n
    else
      missed = missed + n
    end
  end
end
return {reached, missed}
