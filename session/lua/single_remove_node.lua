-- ARGV: prefix, node, limit. Deletes node's heartbeat and up to limit of
-- its bindings. Returns {more (1/0), removed...}.
local node, out = ARGV[2], {0}
local nk = p .. 'nodeconns:' .. node
redis.call('DEL', p .. 'node:' .. node)
for _, id in ipairs(redis.call('SPOP', nk, tonumber(ARGV[3]))) do
  local r = unbind(id)
  if r then out[#out + 1] = r end
end
if redis.call('EXISTS', nk) == 0 then
  redis.call('SREM', p .. 'nodes', node)
else
  out[1] = 1
end
return out
