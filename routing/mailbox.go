package routing

// The mailbox (docs/protocol.md, "The mailbox"): direct messages are kept in the
// recipient's mailbox and numbered with `seq`; a connection that comes back
// catches up from `since`, then gets live messages, with no gap and no
// duplicate at the seam.
//
// One function routes a direct message: routeDirect. It keeps the message
// and delivers it, and its result is (delivered, seq, dup, err). Without a
// DirectPublisher broker it appends to Config.Mailbox and delivers under a
// lock per mailbox, so that each connection gets a mailbox's messages in
// seq order; a DirectPublisher does both in one round trip of its own.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/session"
)

// Catch-up pacing.
const (
	// replayPage is how many kept messages one mailbox read returns.
	replayPage = 100
	// mailStripes is the number of locks that order appends and deliveries
	// per mailbox on the in-memory path.
	mailStripes = 256
	// catchupSettle is how long a connection that has caught up still
	// drops live frames it already got from the mailbox: a message kept
	// before the catch-up's last read may be delivered live just after
	// (another node's publish in flight, a sender between its append and
	// its delivery).
	catchupSettle = 10 * time.Second
	// repairConcurrency is how many repairs read the mailbox at once.
	repairConcurrency = 16
	// repairRetry is how long a repair waits to read again after a failure.
	repairRetry = 500 * time.Millisecond
)

// direct is one direct message to route.
type direct struct {
	e      *Envelope // Kind, Origin, Exclude, Action, User set; Payload is made from head
	sender string    // user id of the sender, "" for the server API
	id     string    // canonical client id ("" = none): see canonicalID
	head   []byte    // the stamped frame without '}', then `,"seq":`
}

// directResult is what routing a direct message gives.
type directResult struct {
	delivered int
	seq       int64
	dup       bool
	blocked   bool // the recipient blocks the sender: it looks undelivered, and is not
	err       error
}

// directFrom routes a direct message from c to user to (out is the
// stamped frame; id the client's raw id, or nil).
func (r *Router) directFrom(c *Conn, to string, out, id []byte) directResult {
	e := &Envelope{Kind: KindMessage, Origin: r.node, Exclude: c.id, Action: c.action, User: to}
	head := out
	if r.mbox != nil {
		head = mailHead(out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	d := direct{e: e, sender: c.user, id: canonicalID(id), head: head}
	res := r.routeDirect(ctx, c, d)
	r.directUndelivered(c, d, res) // Events hook
	if to == c.user && res.seq > 0 && res.err == nil && !res.dup && !res.blocked {
		// A message to oneself is part of c's mailbox, never handed to c:
		// a repair must not replay it to c. (Only when it follows the last
		// one c was handed: one before it may still be on its way, and a
		// repair must not skip that.)
		c.lastSeq.CompareAndSwap(res.seq-1, res.seq)
	}
	return res
}

// routeDirect keeps d in its recipient's mailbox (when it is on) and
// delivers it, unless the recipient blocks the sender. c is the sending
// connection (nil for the server API).
//
// With a DirectPublisher broker (Redis) all of it is one script, one round
// trip, and every recipient, on this node too, gets the message through
// its node's subscription, so in seq order; when the recipient has
// connections here, routeDirect returns only once they were handed it, so
// that c's next message, which may be a broadcast delivered here at once,
// cannot overtake it. In process, blocks come from the store and the
// mailbox is appended to under a lock per mailbox, held until the local
// delivery is done, for the same order.
func (r *Router) routeDirect(ctx context.Context, c *Conn, d direct) directResult {
	if dp, ok := r.broker.(DirectPublisher); ok {
		return r.publishDirect(ctx, dp, c, d)
	}
	if r.blocked(ctx, d.e.User, d.sender) {
		return r.blockedResult(ctx, d)
	}
	if r.mbox == nil {
		d.e.Payload = d.head
		local := r.deliverLocal(d.e)
		r.metrics.delivered[deliveryKind(d.e)].Add(float64(local))
		remote, err := r.publish(ctx, d.e)
		return directResult{delivered: local + remote, err: err}
	}
	mu := &r.stripes[maphash.String(r.seed, d.e.User)%mailStripes]
	mu.Lock()
	defer mu.Unlock()
	seq, frame, dup, err := r.mbox.Append(ctx, d.e.User, d.e.Action, d.sender, d.id, d.head)
	if dup {
		return directResult{seq: seq, dup: true}
	}
	if err != nil {
		// Not kept (the store is down): delivery between connections of
		// this node goes on, without a seq (docs/cluster.md); the sender
		// gets unavailable.
		r.metrics.storeErrors.Inc()
		d.e.Payload = unkept(d.head)
		local := r.deliverLocal(d.e)
		r.metrics.delivered[deliveryKind(d.e)].Add(float64(local))
		return directResult{delivered: local, err: err}
	}
	r.metrics.mailKept.Inc()
	d.e.Payload, d.e.Seq = frame, seq
	local := r.deliverLocal(d.e)
	r.metrics.delivered[deliveryKind(d.e)].Add(float64(local))
	remote, err := r.publish(ctx, d.e)
	return directResult{delivered: local + remote, seq: seq, err: err}
}

// publishDirect is routeDirect through a DirectPublisher.
func (r *Router) publishDirect(ctx context.Context, dp DirectPublisher, c *Conn, d direct) directResult {
	var dd DirectDelivery
	err := errStoreNotReady // made once: this is the per-message path
	if r.storeOK.Load() {
		echo := r.expectEcho(c, d.e)
		dd, err = dp.PublishDirect(ctx, &DirectMessage{Envelope: d.e, Sender: d.sender, ID: d.id, Head: d.head,
			ToSelf: c != nil && d.e.User == c.user})
		if echo != nil && err == nil && dd.Reached > 0 && !dd.Dup && !dd.Blocked {
			r.awaitEcho(echo)
		}
	}
	if err == nil && dd.Missed > 0 {
		// Kept (with the mailbox), but not handed to every connection:
		// those catch up when they come back. The sender hears it, and a
		// resend with the same id is answered from the dedup record.
		err = fmt.Errorf("%w: %w: %d", ErrBrokerUnavailable, errUnreachable, dd.Missed)
	}
	if err == nil && dd.Reached == 0 && !dd.Dup && !dd.Blocked && r.offlineUncertain() {
		// Not offline for sure: the recipient's node may not have
		// rewritten its bindings yet (see offlineUncertain).
		err = fmt.Errorf("%w: other nodes may still be rewriting their bindings", ErrBrokerUnavailable)
	}
	res := directResult{delivered: dd.Reached, seq: dd.Seq, dup: dd.Dup, blocked: dd.Blocked, err: err}
	switch {
	case errors.Is(err, ErrNotSent):
		// Redis is out of reach: delivery between connections of this
		// node goes on (docs/cluster.md), without a seq (the message is not
		// kept) and without the block check (blocks are in the store).
		d.e.Payload = d.head
		if r.mbox != nil {
			d.e.Payload = unkept(d.head)
		}
		res.delivered = r.deliverLocal(d.e)
		r.metrics.delivered[deliveryKind(d.e)].Add(float64(res.delivered))
	case r.mbox != nil && err == nil && !dd.Dup && !dd.Blocked:
		r.metrics.mailKept.Inc()
	}
	if err != nil {
		r.metrics.publishFailed.Inc()
		if errors.Is(err, session.ErrBindingsLost) {
			r.bindingsLost()
		}
	}
	return res
}

// unkept turns a head (`…,"seq":`) back into the frame without a seq.
func unkept(head []byte) []byte {
	return append(head[:len(head)-len(seqMember):len(head)-len(seqMember)], '}')
}

// blockedResult is what the sender of a blocked direct message gets: what
// a message to an offline recipient gets (delivered 0; with the mailbox a
// seq, above the mailbox's numbers and growing with each such message).
func (r *Router) blockedResult(ctx context.Context, d direct) directResult {
	if r.mbox == nil {
		return directResult{blocked: true}
	}
	latest, err := r.mbox.Latest(ctx, d.e.User, d.e.Action)
	if err != nil {
		return directResult{blocked: true, err: err}
	}
	r.blockSeqMu.Lock()
	defer r.blockSeqMu.Unlock()
	if r.blockSeq == nil {
		r.blockSeq = make(map[[3]string]int64)
	}
	k := [3]string{d.e.User, d.e.Action, d.sender}
	r.blockSeq[k]++
	return directResult{seq: latest + r.blockSeq[k], blocked: true}
}

// mailHead turns a stamped frame into the head Mailbox.Append takes: the
// frame without a `seq` member of its own (in any letter case) and without
// its final '}', followed by `,"seq":`.
func mailHead(frame []byte) []byte {
	frame = dropSeq(frame)
	// stamp leaves room after the frame, which nobody else holds: the
	// member usually fits without a copy.
	return append(frame[:len(frame)-1], seqMember...)
}

// seqMember ends the head of a kept frame.
const seqMember = `,"seq":`

var nameSeq = []byte("seq")

// dropSeq returns frame (a JSON object built by stamp or apiMessage)
// without its `seq` members: with the mailbox on, only the server numbers
// messages.
func dropSeq(frame []byte) []byte {
	if bytes.IndexAny(frame, `qQ\`) < 0 {
		return frame
	}
	found := false
	for key := range members(frame) {
		if bytes.EqualFold(memberName(key), nameSeq) {
			found = true
			break
		}
	}
	if !found {
		return frame
	}
	out := make([]byte, 0, len(frame))
	out = append(out, '{')
	for key, val := range members(frame) {
		if !bytes.EqualFold(memberName(key), nameSeq) {
			out = appendMember(out, key, val)
		}
	}
	if len(out) == 1 {
		return append(out, '}')
	}
	out[1] = ' ' // the first member's ','
	return append(out, '}')
}

// canonicalID is the form of a client's raw `id` that dedup compares: a
// string as JSON re-encoded (so escapes do not matter), an integer as its
// digits. "" for none.
func canonicalID(raw []byte) string {
	if raw == nil {
		return ""
	}
	if raw[0] == '"' && bytes.IndexByte(raw, '\\') >= 0 {
		s, _ := stringValue(raw)
		return string(appendJSONString(nil, s))
	}
	return string(raw) // an integer, or a string without escapes
}

// mailSeq reads the number at the end of a kept frame (`,"seq":N}`); 0
// when the frame has none.
func mailSeq(frame []byte) int64 {
	end := len(frame) - 1
	if end < 1 || frame[end] != '}' {
		return 0
	}
	i := end
	for i > 0 && frame[i-1] >= '0' && frame[i-1] <= '9' {
		i--
	}
	if i == end || !bytes.HasSuffix(frame[:i], []byte(`"seq":`)) {
		return 0
	}
	n, err := strconv.ParseInt(string(frame[i:end]), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ackSeqFrame builds the ack of a direct message kept with seq.
func ackSeqFrame(id []byte, delivered int, seq int64) []byte {
	b := make([]byte, 0, 72+len(id))
	b = append(b, `{"type":"ack","id":`...)
	b = append(b, id...)
	b = append(b, `,"delivered":`...)
	b = strconv.AppendInt(b, int64(delivered), 10)
	b = append(b, seqMember...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

// readMsg handles {"type":"read","seq":S}: it moves the user's read
// cursor for the action and acks with the cursor after the move.
func (r *Router) readMsg(c *Conn, b []byte, id []byte) {
	seq, ok := seqValue(member(b, "seq"))
	if !ok {
		r.metrics.errorSent(CodeInvalidJSON)
		c.write(errorFrame(CodeInvalidJSON, "read needs seq, a non-negative integer", id, nil))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	cur, err := r.mbox.MoveCursor(ctx, c.user, c.action, seq)
	if err != nil {
		r.metrics.storeErrors.Inc()
		r.sendError(c, CodeUnavailable, id, nil)
		return
	}
	if id != nil {
		out := []byte(`{"type":"ack","id":`)
		out = append(out, id...)
		out = append(out, `,"read":`...)
		out = strconv.AppendInt(out, cur, 10)
		c.write(append(out, '}'))
	}
}

// seqValue decodes a raw JSON value that must be a non-negative integer
// literal within 2^53.
func seqValue(raw []byte) (int64, bool) {
	if len(raw) == 0 || len(raw) > 16 {
		return 0, false
	}
	for _, ch := range raw {
		if ch < '0' || ch > '9' {
			return 0, false
		}
	}
	if len(raw) > 1 && raw[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil && n <= maxSafeInt
}

// catchup is the state of one connection replaying its mailbox. It exists
// only while the connection catches up (Router.catchups).
type catchup struct {
	kick chan struct{} // the connection's writer sent a frame (capacity 1)
	stop chan struct{} // closed when the connection closes
	once sync.Once

	repair bool // started by a repair: its reads wait for Router.repairReads

	mu       sync.Mutex
	done     bool           // caught up: live frames go straight out, unless seq <= last
	last     int64          // once done: the highest seq the catch-up wrote
	live     []session.Mail // live frames that arrived meanwhile
	liveSize int
	overflow bool // live frames were dropped: read them from the mailbox
}

func (cu *catchup) close() { cu.once.Do(func() { close(cu.stop) }) }

// writeMail writes a message to c, or holds it while c catches up: a kept
// frame (seq > 0), or another message (seq 0: a broadcast), which must not
// overtake the kept ones of its sender.
func (c *Conn) writeMail(frame []byte, seq int64) {
	r := c.r
	if seq > 0 {
		c.sawSeq(seq)
	}
	if r.catchingUp.Load() > 0 {
		if v, ok := r.catchups.Load(c); ok {
			if cu := v.(*catchup); cu.hold(c, frame, seq, r.cfg.OutboundBufferBytes) { //nolint:forcetypeassert // only *catchup is stored
				return
			}
		}
	}
	c.write(frame)
}

// hold keeps a live frame for the end of the catch-up (or drops one the
// catch-up already wrote) and reports true; false when c may write it.
// Past limit bytes the held kept frames are dropped (the replay reads them
// from the mailbox instead); if the other held ones alone are past it, c
// is a slow consumer.
func (cu *catchup) hold(c *Conn, frame []byte, seq int64, limit int) bool {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	if cu.done {
		// The catch-up wrote every kept message up to last (and none
		// above): drop only those.
		return seq > 0 && seq <= cu.last
	}
	if cu.liveSize+len(frame) > limit {
		kept, size := cu.live[:0], 0
		for _, h := range cu.live {
			if h.Seq == 0 {
				kept = append(kept, h)
				size += len(h.Frame)
			}
		}
		clear(cu.live[len(kept):])
		cu.live, cu.liveSize, cu.overflow = kept, size, true
		if seq > 0 {
			return true
		}
		if size+len(frame) > limit {
			c.evict()
			return true
		}
	}
	cu.live = append(cu.live, session.Mail{Seq: seq, Frame: frame})
	cu.liveSize += len(frame)
	return true
}

// takeBefore removes from the front of the held frames the kept ones up to
// seq (the replay writes seq now) and returns the held broadcasts that
// arrived before a kept frame up to seq: they go out first.
func (cu *catchup) takeBefore(seq int64) [][]byte {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	var out [][]byte
	for len(cu.live) > 0 {
		h := cu.live[0]
		if h.Seq > seq {
			break
		}
		if h.Seq == 0 {
			next := int64(0) // the first kept frame held after it
			for _, k := range cu.live[1:] {
				if k.Seq > 0 {
					next = k.Seq
					break
				}
			}
			if next == 0 || next > seq {
				break
			}
			out = append(out, h.Frame)
		}
		cu.liveSize -= len(h.Frame)
		cu.live[0] = session.Mail{}
		cu.live = cu.live[1:]
	}
	return out
}

// kickCatchup tells a catching-up connection's replay that its writer sent
// a frame. It runs on melody's writer after every frame.
func (c *Conn) kickCatchup() {
	if c.r.catchingUp.Load() == 0 {
		return
	}
	if v, ok := c.r.catchups.Load(c); ok {
		select {
		case v.(*catchup).kick <- struct{}{}: //nolint:forcetypeassert // only *catchup is stored
		default:
		}
	}
}

// pendingBytes is what waits in c's backlog.
func (c *Conn) pendingBytes() int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.backlogBytes
}

// onlineMailbox reads where c's catch-up starts (since, or the read cursor
// when since is nil) and returns the members ready carries, and the
// catch-up to start once c is indexed.
func (r *Router) onlineMailbox(ctx context.Context, c *Conn, since []byte) (readyTail []byte, cu *catchup, from int64, err error) {
	p, err := r.mbox.Read(ctx, c.user, c.action, 0, 0)
	if err != nil {
		return nil, nil, 0, err
	}
	start := p.Read
	if !absent(since) {
		start, _ = seqValue(since) // checked by online
	}
	from, gap := p.After(start)
	readyTail = []byte(`,"seq":`)
	readyTail = strconv.AppendInt(readyTail, p.Latest, 10)
	if gap {
		readyTail = append(readyTail, `,"gap":true`...)
	}
	cu = &catchup{kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c.lastSeq.Store(from)
	r.catchups.Store(c, cu)
	r.catchingUp.Add(1)
	return readyTail, cu, from, nil
}

// endCatchup forgets c's catch-up, unless a repair replaced it.
func (r *Router) endCatchup(c *Conn, cu *catchup) {
	if r.catchups.CompareAndDelete(c, cu) {
		r.catchingUp.Add(-1)
	}
	cu.close()
}

// sawSeq records that c was handed (or will be, from a catch-up's held
// frames) the kept message seq.
func (c *Conn) sawSeq(seq int64) {
	for {
		cur := c.lastSeq.Load()
		if seq <= cur || c.lastSeq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// resubscribed repairs the connections of t (a user in an action) after
// the broker subscribed t again (Resubscriber): Redis discarded what it
// had queued for the broken subscription, and what was kept while this
// node was not subscribed reached nobody here. Each connection replays its
// mailbox from the last message it was handed, as a catch-up does: live
// frames are held meanwhile, nothing is written twice, order is kept.
// It runs on the broker's receive loop before the new subscription
// delivers anything.
func (r *Router) resubscribed(t Topic) {
	if t.User == "" || r.mbox == nil {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	repaired := false
	for _, c := range r.users[t.User] {
		if c.action == t.Action {
			r.repair(c)
			repaired = true
		}
	}
	if repaired {
		r.metrics.repairs.Inc()
	}
}

// repair starts a catch-up of c from c.lastSeq. Called with r.mu held
// (read): c is indexed, so its own count in r.wg is held.
func (r *Router) repair(c *Conn) {
	cu := &catchup{kick: make(chan struct{}, 1), stop: make(chan struct{}), repair: true}
	for {
		v, loaded := r.catchups.LoadOrStore(c, cu)
		if !loaded {
			r.catchingUp.Add(1)
			break
		}
		old := v.(*catchup) //nolint:forcetypeassert // only *catchup is stored
		old.mu.Lock()
		if !old.done {
			// Still replaying: it reads the mailbox once more before it
			// ends, and that read comes after the resubscription.
			old.overflow = true
			old.mu.Unlock()
			return
		}
		old.mu.Unlock()
		// Settling after a catch-up (dropping live repeats of what it
		// wrote, all at or below c.lastSeq): the repair takes its place,
		// unless it has just ended (then look again).
		if r.catchups.CompareAndSwap(c, old, cu) {
			old.close()
			break
		}
	}
	if c.state.Load() != stateOnline {
		// Closed meanwhile: onDisconnect may have looked for a catch-up
		// before this one was stored.
		r.endCatchup(c, cu)
		return
	}
	r.wg.Add(1)
	go r.replay(c, cu, c.lastSeq.Load())
}

// replay sends c every kept message after from, then the live ones that
// arrived meanwhile, and ends the catch-up. c was indexed before it
// starts, so every message kept after its first read is also held live:
// together they leave no gap. It goes as fast as the client reads: a page
// is written only once the connection's backlog is under a quarter of
// OutboundBufferBytes.
func (r *Router) replay(c *Conn, cu *catchup, from int64) {
	defer r.wg.Done()
	settle := false
	defer func() {
		if settle {
			time.AfterFunc(catchupSettle, func() { r.endCatchup(c, cu) })
		} else {
			r.endCatchup(c, cu)
		}
	}()
	pos, served, failures := from, 0, 0
	budget := r.cfg.OutboundBufferBytes / 4
	// send writes a replayed or held frame once the connection has room;
	// held broadcasts (Seq 0) always go, kept frames only past pos, after
	// the held broadcasts that arrived before them.
	send := func(m session.Mail) bool {
		if m.Seq > 0 && m.Seq <= pos {
			return true
		}
		for c.pendingBytes() > budget {
			select {
			case <-cu.kick:
			case <-cu.stop:
				return false
			}
		}
		if m.Seq > 0 {
			for _, b := range cu.takeBefore(m.Seq) {
				c.write(b)
			}
		}
		c.write(m.Frame)
		if m.Seq > 0 {
			pos = m.Seq
			served++
			c.sawSeq(m.Seq)
		}
		return true
	}
	for {
		before := served
		cu.mu.Lock()
		cu.overflow = false
		cu.mu.Unlock()
		if cu.repair {
			select {
			case r.repairReads <- struct{}{}:
			case <-cu.stop:
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
		p, err := r.mbox.Read(ctx, c.user, c.action, pos, replayPage)
		cancel()
		if cu.repair {
			<-r.repairReads
		}
		if err != nil {
			r.metrics.storeErrors.Inc()
			if !cu.repair {
				r.log.Warn("mailbox catch-up failed", "conn", c.id, "err", err)
				c.closeWithError(CodeUnavailable, websocket.CloseTryAgainLater)
				return
			}
			// A repair follows a broken subscription, often a Redis that
			// is coming back: the connection is fine, so wait and read
			// again (live frames are held meanwhile) rather than close it.
			failures++
			if failures == 1 {
				r.log.Warn("mailbox repair cannot read the mailbox; retrying", "conn", c.id, "err", err)
			}
			select {
			case <-time.After(repairRetry):
				continue
			case <-cu.stop:
				return
			}
		}
		if cu.repair && p.Latest < pos {
			// The mailbox lost its numbers (Redis restarted empty): they
			// start again from 1, and so does this connection.
			pos = 0
			c.lastSeq.Store(0)
		}
		for _, m := range p.Mails {
			if !send(m) {
				return
			}
		}
		if len(p.Mails) == replayPage {
			continue
		}
		cu.mu.Lock()
		// Held kept frames at or below pos were replayed: drop them. The
		// others stay in arrival order (each sender's order).
		kept, size, next := cu.live[:0], 0, int64(0)
		for _, h := range cu.live {
			if h.Seq > 0 && h.Seq <= pos {
				continue
			}
			if h.Seq > 0 && (next == 0 || h.Seq < next) {
				next = h.Seq
			}
			kept = append(kept, h)
			size += len(h.Frame)
		}
		clear(cu.live[len(kept):])
		cu.live, cu.liveSize = kept, size
		// Held kept frames were dropped, or the first held one is not
		// next: read again. (A gap that a read cannot fill is gone from
		// the mailbox: the held frames follow it.)
		if cu.overflow || (next > pos+1 && served > before) {
			cu.mu.Unlock()
			continue
		}
		if cu.liveSize > budget {
			live := cu.live
			cu.live, cu.liveSize = nil, 0
			cu.mu.Unlock()
			for _, m := range live {
				if !send(m) {
					return
				}
			}
			continue
		}
		last := pos
		for _, m := range cu.live {
			c.write(m.Frame)
			if m.Seq > 0 {
				served++
				last = max(last, m.Seq)
			}
		}
		cu.live, cu.done, cu.last = nil, true, last
		cu.mu.Unlock()
		// Nothing written from the mailbox: no live frame can repeat one,
		// so the catch-up ends at once (a connection with an empty mailbox,
		// the usual case, keeps nothing for catchupSettle).
		settle = served > 0
		r.metrics.catchups.Inc()
		r.metrics.catchupSize.Observe(float64(served))
		return
	}
}

// errNoMailbox: the mailbox API was called on a Router without one.
var errNoMailbox = errors.New("routing: the mailbox is off")
