-- Routes one direct message (SPEC sections 3, 10, 12), after
-- mailbox_append.lua (concatenated before this code). Every key is in the
-- recipient's slot.
-- KEYS: 1 the recipient's route hash in the action (node -> connections),
--       2 the recipient's blocks set, 3 its block counters,
--       4-7 the mailbox keys of mailbox_append (stream, meta, dedup, index)
--       with the mailbox; without it KEYS[4] is the recipient's history
--       stream (history.lua),
--       8 (single Redis only) the sending node's heartbeat.
-- ARGV: 1 channel prefix (the node id is appended), 2 the envelope's wire
--       form up to its seq field, 3 the frame head (ending in ',"seq":')
--       with the mailbox, else the whole frame, 4 the sending node,
--       5 PUBLISH or SPUBLISH, 6 the sender's user id ('' for the server
--       API), 7 '1' with the mailbox, 8 '1' when the sending connection is
--       one of the recipient's (a message to oneself): it is not counted,
--       9.. mailbox_append's arguments from action on; without the
--       mailbox, 9 the history length (0: none) and 10 its time to live
--       (ms). A message kept in no mailbox is appended to the history, and
--       the envelope carries its entry id (history_envelope).
-- Returns {reached, missed, seq, state, trimmed}: connections on nodes whose
-- subscription took the message (this node included: every recipient
-- gets it through its node's subscription, so in seq order), connections
-- on nodes that could not take it, the message's number (0 without the
-- mailbox), and state 0 (routed), 1 (a resend within the dedup window:
-- nothing delivered, seq is the first one's) or 2 (the recipient blocks
-- the sender: nothing kept or delivered; seq looks like a real one), and
-- how many old messages retention removed from the mailbox.
-- {-1, 0, 0, 0}: the store lost this node's bindings; nothing was done.
if KEYS[8] and redis.call('EXISTS', KEYS[8]) == 0 then return {-1, 0, 0, 0, 0} end
local mailbox = ARGV[7] == '1'
if ARGV[6] ~= '' and redis.call('SISMEMBER', KEYS[2], ARGV[6]) == 1 then
  local seq = 0
  if mailbox then
    -- As if kept: above the mailbox's numbers, growing with each message,
    -- so the sender's acks look like those for an offline recipient.
    seq = tonumber(redis.call('HGET', KEYS[5], 'seq') or '0') + redis.call('HINCRBY', KEYS[3], ARGV[6], 1)
  end
  return {0, 0, seq, 2, 0}
end
local seq, frame, trimmed = 0, ARGV[3], 0
if mailbox then
  local dup
  seq, frame, dup, trimmed = mailbox_append(KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[9], ARGV[3],
    tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]))
  if dup == 1 then return {0, 0, seq, 1, 0} end
end
local r = redis.call('HGETALL', KEYS[1])
local nodes = {}
for i = 1, #r, 2 do
  local n = tonumber(r[i + 1])
  if r[i] == ARGV[4] and ARGV[8] == '1' then n = n - 1 end
  if n > 0 then
    nodes[#nodes + 1] = r[i]
    nodes[#nodes + 1] = n
  end
end
local s = ''
if seq > 0 then s = tostring(seq) end
local id, env
if not mailbox and #nodes > 0 and tonumber(ARGV[9]) > 0 then
  local names = {}
  for i = 1, #nodes, 2 do names[#names + 1] = nodes[i] end
  id = history_add(KEYS[4], ARGV[2], frame, names, tonumber(ARGV[9]), ARGV[10])
  env = history_envelope(ARGV[2], id, s, frame)
else
  env = ARGV[2] .. string.char(#s) .. s .. frame
end
local reached, missed = 0, 0
local lost
for i = 1, #nodes, 2 do
  if redis.call(ARGV[5], ARGV[1] .. nodes[i], env) > 0 then
    reached = reached + nodes[i + 1]
  else
    missed = missed + nodes[i + 1]
    lost = lost or {}
    lost[#lost + 1] = nodes[i]
  end
end
if lost and id then history_missed(KEYS[4], id, lost, tonumber(ARGV[9])) end
return {reached, missed, seq, 0, trimmed}
