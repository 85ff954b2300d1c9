-- Queues a user.online, unless a user.offline of the same user and action
-- is scheduled: that one is cancelled instead (the user came back).
-- KEYS[1] delayed zset, KEYS[2] offline hash, KEYS[3] events stream;
-- ARGV: key, maxlen, id, at (Unix ms), body.
-- Returns -1 when cancelled, else how many old events the trim dropped.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return -1
end
local before = redis.call('XLEN', KEYS[3])
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '*', 'id', ARGV[3], 'key', ARGV[1], 'at', ARGV[4], 'body', ARGV[5])
return before + 1 - redis.call('XLEN', KEYS[3])
