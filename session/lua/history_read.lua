-- Reads the history of a target (history.lua) for one node: the entries
-- after ARGV[1] (an entry id; '' = unknown: the last ARGV[3] ms, by
-- Redis's clock) published to node ARGV[2] and not corrected for it, at
-- most ARGV[4] entries scanned.
-- KEYS[1]: the history stream.
-- Returns {the last id scanned ('' if none), how many were scanned, id,
-- header, frame, id, ...}.
local after = ARGV[1]
if after == '' then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  after = string.format('%d-0', ms)
else
  after = '(' .. after
end
local es = redis.call('XRANGE', KEYS[1], after, '+', 'COUNT', ARGV[4])
local mark = ',' .. ARGV[2] .. ','
local out = {'', tostring(#es)}
for _, e in ipairs(es) do
  out[1] = e[1]
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  if f.n and string.find(f.n, mark, 1, true) then
    if f.x then
      if #out >= 5 and out[#out - 2] == f.x then
        out[#out] = nil
        out[#out] = nil
        out[#out] = nil
      end
    elseif f.h and f.f then
      out[#out + 1] = e[1]
      out[#out + 1] = f.h
      out[#out + 1] = f.f
    end
  end
end
return out
