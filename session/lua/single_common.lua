-- Shared by the single-Redis binding scripts. ARGV[1] is the key prefix;
-- the scripts build the keys they touch from it, which is why they run
-- only on a single Redis (a cluster uses the per-slot scripts instead).
local p = ARGV[1]

local function route_add(key, node, delta)
  if redis.call('HINCRBY', key, node, delta) <= 0 then
    redis.call('HDEL', key, node)
  end
end

-- write adds binding id (user, action, node, at) and returns whether it is
-- the user's first connection in the action.
local function write(id, user, action, node, at)
  local uk = p .. 'uroute:' .. action .. '|' .. user
  local first = redis.call('EXISTS', uk) == 0
  redis.call('HSET', p .. 'conn:' .. id, 'user_id', user, 'action', action, 'node', node, 'connected_at', at)
  redis.call('HSET', p .. 'action:' .. action, id, user)
  redis.call('HSET', p .. 'user:' .. user, id, action)
  route_add(uk, node, 1)
  route_add(p .. 'aroute:' .. action, node, 1)
  redis.call('SADD', p .. 'nodeconns:' .. node, id)
  redis.call('SADD', p .. 'nodes', node)
  return first
end

-- unbind removes binding id whole and returns
-- {id, user_id, action, node, connected_at, last}, or nil if it is absent.
local function unbind(id)
  local ck = p .. 'conn:' .. id
  local f = redis.call('HMGET', ck, 'user_id', 'action', 'node', 'connected_at')
  if not f[1] then return nil end
  local user, action, node, at = f[1], f[2] or '', f[3] or '', f[4] or '0'
  local uk, nk = p .. 'uroute:' .. action .. '|' .. user, p .. 'nodeconns:' .. node
  redis.call('DEL', ck)
  redis.call('HDEL', p .. 'action:' .. action, id)
  redis.call('HDEL', p .. 'user:' .. user, id)
  route_add(uk, node, -1)
  route_add(p .. 'aroute:' .. action, node, -1)
  redis.call('SREM', nk, id)
  if redis.call('EXISTS', nk) == 0 and redis.call('EXISTS', p .. 'node:' .. node) == 0 then
    redis.call('SREM', p .. 'nodes', node)
  end
  local last = '0'
  if redis.call('EXISTS', uk) == 0 then last = '1' end
  return {id, user, action, node, at, last}
end
