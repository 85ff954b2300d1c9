-- Reads a mailbox (SPEC section 10).
-- KEYS: stream, meta
-- ARGV: since, limit, now_ms, ttl_ms
-- Returns {latest, read, gap (1/0), first kept (0: none), seq1, frame1, seq2, frame2, ...}.
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local m = redis.call('HMGET', KEYS[2], 'seq', 'read')
local latest, read = tonumber(m[1] or '0'), tonumber(m[2] or '0')

local function seq_of(id) return tonumber(string.match(id, '^(%d+)')) end
local function field(f, name)
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end

-- The oldest kept number: skip entries older than the ttl.
local first, start = 0, '-'
while first == 0 do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    if tonumber(field(e[2], 't') or '0') > cutoff then
      first = seq_of(e[1])
      break
    end
  end
  start = '(' .. batch[#batch][1]
end

local from, gap = since, 0
if since > latest then
  from, gap = 0, 1
elseif first == 0 then
  if since < latest then gap = 1 end
elseif since < first - 1 then
  gap = 1
end

local out = {latest, read, gap, first}
if limit > 0 and first > 0 then
  local lo = math.max(from + 1, first)
  local entries = redis.call('XRANGE', KEYS[1], lo .. '-0', '+', 'COUNT', limit)
  for _, e in ipairs(entries) do
    out[#out + 1] = seq_of(e[1])
    out[#out + 1] = field(e[2], 'f')
  end
end
return out
