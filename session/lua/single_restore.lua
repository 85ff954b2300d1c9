-- ARGV: prefix, then id, user_id, action, node, connected_at per binding.
-- Writes the bindings whose conn hash is absent. Returns how many.
local n = 0
for i = 2, #ARGV, 5 do
  if redis.call('EXISTS', p .. 'conn:' .. ARGV[i]) == 0 then
    write(ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4])
    n = n + 1
  end
end
return n
