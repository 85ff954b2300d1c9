-- KEYS: stream, meta, dedup, index
-- ARGV: action, head, now_ms, size, ttl_ms, dedup_ms, keep_ms
-- Returns {seq, frame or false, dup, trimmed}.
local seq, frame, dup, trimmed = mailbox_append(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2],
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
return {seq, frame, dup, trimmed}
