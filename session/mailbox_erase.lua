-- Erases one mailbox's messages; its numbers and read cursor stay.
-- KEYS: stream, index
-- ARGV: action
-- Returns how many messages were deleted.
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n
