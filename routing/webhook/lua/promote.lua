-- Queues the scheduled user.offline events that are due, oldest first.
-- KEYS[1] delayed zset, KEYS[2] offline hash, KEYS[3] events stream;
-- ARGV: now (Unix ms), maxlen, count.
-- Returns how many old events the trims dropped.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local dropped = 0
for _, k in ipairs(due) do
  redis.call('ZREM', KEYS[1], k)
  local p = redis.call('HGET', KEYS[2], k)
  redis.call('HDEL', KEYS[2], k)
  if p then
    local a = string.find(p, ' ', 1, true)
    local b = string.find(p, ' ', a + 1, true)
    local before = redis.call('XLEN', KEYS[3])
    redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '*', 'id', string.sub(p, 1, a - 1), 'key', k,
      'at', string.sub(p, a + 1, b - 1), 'body', string.sub(p, b + 1))
    dropped = dropped + before + 1 - redis.call('XLEN', KEYS[3])
  end
end
return dropped
