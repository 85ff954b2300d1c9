-- Moves a read cursor forward (SPEC section 10), never back, at most to
-- the last number given.
-- KEYS: meta
-- ARGV: seq
-- Returns the cursor after the move.
local m = redis.call('HMGET', KEYS[1], 'seq', 'read')
if not m[1] then return 0 end
local want = math.min(tonumber(ARGV[1]), tonumber(m[1]))
local cur = tonumber(m[2] or '0')
if want > cur then
  redis.call('HSET', KEYS[1], 'read', want)
  cur = want
end
return cur
