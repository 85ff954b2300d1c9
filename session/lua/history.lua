-- The short history of a target (an action, or a user in an action) that
-- lets a node whose subscription broke replay what Redis dropped with it
-- (docs/cluster.md, "Broken subscriptions"). Each entry is one routed
-- envelope: h its wire header, f its frame, n the nodes it was published
-- to, as ",node1,node2,". The envelope published carries the entry's id
-- (history_envelope). A correction entry (x the entry's id, n the
-- nodes whose publish reached no subscriber) follows an entry that some
-- nodes did not take: those nodes must not replay it.

-- history_add appends an entry for header and frame published to the
-- nodes in list (a Lua table) and returns its id.
local function history_add(key, header, frame, list, maxlen, ttl)
  local id = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'h', header, 'f', frame,
    'n', ',' .. table.concat(list, ',') .. ',')
  redis.call('PEXPIRE', key, ttl)
  return id
end

-- history_envelope is the envelope for entry id: header is its wire form
-- up to its seq field, ending with the Conn and Node fields empty (two
-- zero length bytes); the id goes in the Conn field (an id is shorter
-- than 128 bytes: one length byte), where nodes that predate the history
-- ignore it. seq is the seq field's content.
local function history_envelope(header, id, seq, frame)
  return string.sub(header, 1, -3) .. string.char(#id) .. id .. '\0' .. string.char(#seq) .. seq .. frame
end

-- history_missed records that the nodes in list did not take entry id.
local function history_missed(key, id, list, maxlen)
  redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'x', id, 'n', ',' .. table.concat(list, ',') .. ',')
end
