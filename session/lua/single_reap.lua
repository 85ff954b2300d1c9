-- ARGV: prefix, limit. Removes up to limit bindings of nodes without a
-- heartbeat. Returns {more (1/0), removed...}.
local limit, out, more = tonumber(ARGV[2]), {0}, 0
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if redis.call('EXISTS', p .. 'node:' .. node) == 0 then
    if limit <= 0 then more = 1 break end
    local nk = p .. 'nodeconns:' .. node
    local ids = redis.call('SPOP', nk, limit)
    limit = limit - #ids
    for _, id in ipairs(ids) do
      local r = unbind(id)
      if r then out[#out + 1] = r end
    end
    if redis.call('EXISTS', nk) == 0 then
      redis.call('SREM', p .. 'nodes', node)
    else
      more = 1
    end
  end
end
out[1] = more
return out
