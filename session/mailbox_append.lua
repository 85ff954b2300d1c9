-- mailbox_append keeps one direct message in its recipient's mailbox
-- (SPEC section 10). It is a function definition only: mailbox_append_main.lua
-- calls it as a script of its own, and a routing script may be concatenated
-- after it and call it in the same round trip. Every key is in the hash slot
-- of the recipient's user id (see RedisMailbox for the names).
--
--   stream    the mailbox: a Stream of entries "<seq>-0" {f = frame, t = ms}
--   meta      hash: seq (last number given), read (read cursor)
--   dedup     string: the number kept for (sender, id), PX dedup_ms
--   index     set of the user's actions that have a mailbox
--   action    the mailbox's action (member of index)
--   head      the frame without its final '}', followed by ',"seq":'
--   now_ms    the caller's clock, Unix ms (kept as t)
--   size      messages kept (MAILBOX_SIZE); XTRIM MAXLEN exact
--   ttl_ms    age of the oldest kept message (MAILBOX_TTL)
--   dedup_ms  dedup window (DEDUP_WINDOW); 0: no id, no dedup
--   keep_ms   lifetime of meta and index after the last append (renewed
--             when less than a day of it has gone: see below)
--
-- Returns seq, frame (false for a duplicate), dup (1 or 0), and how many
-- messages retention removed.
local function mailbox_append(stream, meta, dedup, index, action, head, now_ms, size, ttl_ms, dedup_ms, keep_ms)
  if dedup_ms > 0 then
    local prev = redis.call('GET', dedup)
    if prev then
      return tonumber(prev), false, 1, 0
    end
  end
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  -- A new stream (first message, all expired, or erased: erasing takes
  -- the action out of index) renews meta and index below.
  local fresh = redis.call('EXISTS', stream) == 0
  local frame = head .. seq .. '}'
  local ok = redis.pcall('XADD', stream, seq .. '-0', 'f', frame, 't', now_ms)
  if type(ok) == 'table' and ok.err then
    -- The stream is ahead of meta (meta was lost): continue its numbering.
    local info = redis.call('XINFO', 'STREAM', stream)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        seq = tonumber(string.match(info[i + 1], '^(%d+)')) + 1
      end
    end
    redis.call('HSET', meta, 'seq', seq)
    frame = head .. seq .. '}'
    redis.call('XADD', stream, seq .. '-0', 'f', frame, 't', now_ms)
  end
  -- Entries are numbered 1..seq, so there are at most seq of them: no
  -- trim is needed before the mailbox's number passes its size.
  local trimmed = 0
  if seq > size then
    trimmed = redis.call('XTRIM', stream, 'MAXLEN', size)
  end
  -- Drop what is older than ttl_ms, on every 32nd append (readers skip
  -- expired entries, so this only bounds memory): entries are in time
  -- order, so the expired ones lead; at most 100 are looked at.
  local cutoff = now_ms - ttl_ms
  local old = {}
  if seq % 32 == 0 then
    -- Usually the oldest entry has not expired: look at it alone first.
    old = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  end
  if #old > 0 then
    local f, t = old[1][2], 0
    for i = 1, #f, 2 do
      if f[i] == 't' then t = tonumber(f[i + 1]) end
    end
    if t > cutoff then old = {} else old = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100) end
  end
  local keep_from = nil
  for _, e in ipairs(old) do
    local f = e[2]
    local t = 0
    for i = 1, #f, 2 do
      if f[i] == 't' then t = tonumber(f[i + 1]) end
    end
    if t > cutoff then
      keep_from = e[1]
      break
    end
  end
  if keep_from == nil and #old > 0 then
    keep_from = (tonumber(string.match(old[#old][1], '^(%d+)')) + 1) .. '-0'
  end
  if keep_from ~= nil then
    trimmed = trimmed + redis.call('XTRIM', stream, 'MINID', keep_from)
  end
  redis.call('PEXPIRE', stream, ttl_ms)
  -- meta and index live keep_ms (a year and more) after the last append;
  -- renewing them once a day is exact enough and costs one call, not three.
  if fresh or redis.call('PTTL', meta) < keep_ms - 86400000 then
    redis.call('PEXPIRE', meta, keep_ms)
    redis.call('SADD', index, action)
    redis.call('PEXPIRE', index, keep_ms)
  end
  if dedup_ms > 0 then
    redis.call('SET', dedup, seq, 'PX', dedup_ms)
  end
  return seq, frame, 0, trimmed
end
