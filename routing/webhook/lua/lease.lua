-- Takes or renews a partition's lease for a node.
-- KEYS[1] lease; ARGV: node, ttl (ms). Returns 1 when the node holds it.
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
