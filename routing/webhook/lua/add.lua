-- Queues one event, trimming the stream to its limit.
-- KEYS[1] events stream; ARGV: maxlen, id, key, at (Unix ms), body.
-- Returns how many old events the trim dropped.
local before = redis.call('XLEN', KEYS[1])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'id', ARGV[2], 'key', ARGV[3], 'at', ARGV[4], 'body', ARGV[5])
return before + 1 - redis.call('XLEN', KEYS[1])
