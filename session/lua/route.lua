-- Routes one message to the other nodes that hold its target: the
-- connections of a user in an action, or of an action.
-- KEYS[1]: the target's route hash (node -> connections there); KEYS[2]:
-- the target's history stream (history.lua, concatenated before this
-- code); on a single Redis KEYS[3] is the sending node's heartbeat
-- (absent: the store lost this node's bindings, so nothing is published
-- and {-1, 0} says so).
-- ARGV: 1 channel prefix (the node id is appended), 2 the envelope's wire
-- form up to its seq field, 3 its frame, 4 sending node, 5 publish
-- command (PUBLISH or SPUBLISH), 6 the seq field's content ('' = none),
-- 7 history length (0: no history), 8 history time to live (ms).
-- With a history, the message is appended to it first and the envelope
-- carries its entry id (history_envelope), so that a node can tell what
-- it received; the header must then end with empty Conn and Node fields.
-- Returns {connections on nodes that took the message, connections on nodes
-- whose subscription is gone}. Cost: one HGETALL of a hash with one field
-- per node, one publish per other node: independent of connection counts.
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return {-1, 0} end
local r = redis.call('HGETALL', KEYS[1])
local nodes = {}
for i = 1, #r, 2 do
  if r[i] ~= ARGV[4] then nodes[#nodes + 1] = i end
end
if #nodes == 0 then return {0, 0} end
local maxlen = tonumber(ARGV[7])
local id, env
if maxlen > 0 then
  local names = {}
  for k, i in ipairs(nodes) do names[k] = r[i] end
  id = history_add(KEYS[2], ARGV[2], ARGV[3], names, maxlen, ARGV[8])
  env = history_envelope(ARGV[2], id, ARGV[6], ARGV[3])
else
  env = ARGV[2] .. string.char(#ARGV[6]) .. ARGV[6] .. ARGV[3]
end
local reached, missed = 0, 0
local lost
for _, i in ipairs(nodes) do
  local n = tonumber(r[i + 1])
  if redis.call(ARGV[5], ARGV[1] .. r[i], env) > 0 then
    reached = reached + n
  else
    missed = missed + n
    lost = lost or {}
    lost[#lost + 1] = r[i]
  end
end
if lost and id then history_missed(KEYS[2], id, lost, maxlen) end
return {reached, missed}
