package routing

import (
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"
	"golang.org/x/time/rate"

	"github.com/switchboard/switchboard/auth"
)

// Connection states.
const (
	stateNew     int32 = iota // upgraded, waiting for online
	stateOnline               // bound and ready
	stateClosed               // closing or closed
	stateBinding              // online in progress
)

// Conn is one WebSocket connection. Its identity (ID, user, action) is fixed
// before it goes online and read without locks afterwards.
type Conn struct {
	r  *Router
	s  *melody.Session
	id string

	upgraded     chan struct{} // closed once the WebSocket handshake is done
	presetAction string        // from /ws/{action}
	upgradeToken *auth.Claims  // verified token from the upgrade request

	state   atomic.Int32
	closing atomic.Bool

	// Outbound flow: at most Config.OutboundQueue frames are handed to
	// melody's writer at once; more wait in backlog (allocated only while
	// needed) until the writer reports them sent. A client that reads
	// keeps the writer making progress, however large the backlog grows
	// (up to OutboundMaxBytes); one over OutboundBufferBytes whose writer
	// has written nothing for OutboundStall is a slow consumer.
	inflight     atomic.Int32 // frames handed to melody, not yet written
	backlogN     atomic.Int32 // len(backlog), for the lock-free fast path
	evicted      atomic.Bool  // evict has begun: every later frame is dropped
	authed       bool         // the user id comes from a token; set before stateOnline
	outMu        sync.Mutex   // guards backlog, backlogBytes, closeMsg and progress
	backlog      [][]byte     // nil entry: the close frame closeMsg
	backlogBytes int
	closeMsg     []byte
	limiter      *connLimiter // created by the first message or ping
	// echo receives when this node's subscription has delivered a direct
	// message this connection sent to a user with connections here (see
	// Router.awaitEcho); made by the first such message.
	echo chan struct{}
	// lastSeq is the highest seq of its mailbox this connection was handed
	// (or held for, while it catches up), or where its catch-up started: a
	// repair replays from there (mailbox.go).
	lastSeq atomic.Int64

	// Set before the state becomes stateOnline. (The fields are ordered
	// to keep Conn within Go's 320-byte size class.)
	user, action string
	prefix       atomic.Pointer[[]byte] // see stampPrefix
	connectedAt  time.Time
	pos, upos    int32 // index in the action's and the user's slice, guarded by Router.mu

	mu          sync.Mutex // guards the timers and reason
	onlineTimer *time.Timer
	expiryTimer *time.Timer
	expGen      int32
	// progress is when (Router.clock) the writer last finished a frame
	// while a backlog waited, or when the backlog began. Guarded by outMu
	// (it sits here to keep Conn's size class).
	progress uint32
	reason   string // why it was closed, for metrics
}

// ID returns the connection id.
func (c *Conn) ID() string { return c.id }

// UserID returns the bound user id ("" before online).
func (c *Conn) UserID() string {
	if c.state.Load() == stateNew {
		return ""
	}
	return c.user
}

// Action returns the bound action ("" before online).
func (c *Conn) Action() string {
	if c.state.Load() == stateNew {
		return ""
	}
	return c.action
}

// stampPrefix returns `{"from":…,"action":…,"ts":`, the start of every
// message c sends, computed by the first one: an idle connection does not
// keep it.
func (c *Conn) stampPrefix() []byte {
	if p := c.prefix.Load(); p != nil {
		return *p
	}
	p := stampPrefix(c.user, c.action)
	c.prefix.CompareAndSwap(nil, &p)
	return p
}

// connLimiter is a connection's rate limit, for messages and pings alike.
type connLimiter struct {
	*rate.Limiter
	pingsRefused int // pings refused since the last frame allowed
}

// allow reports whether the rate limit lets one more message or ping of c
// through. It runs only on c's reader goroutine; an idle connection never
// pays for its limiter.
func (c *Conn) allow() bool {
	if c.limiter == nil {
		c.limiter = &connLimiter{Limiter: rate.NewLimiter(rate.Limit(c.r.cfg.RateLimit), c.r.cfg.RateBurst)}
	}
	if c.limiter.Allow() {
		c.limiter.pingsRefused = 0
		return true
	}
	return false
}

// onPing answers a ping frame with a pong, as gorilla's default handler
// does, if the rate limit allows: a ping costs the server a write, so it
// counts like a message. An excess ping gets no pong, and a connection that
// goes on pinging for another RATE_BURST pings without a pause is closed
// with 1008. It runs on c's reader goroutine.
func (c *Conn) onPing(data string) error {
	if c.closing.Load() {
		return nil
	}
	if !c.allow() {
		c.limiter.pingsRefused++
		if c.limiter.pingsRefused > c.r.cfg.RateBurst {
			c.close(websocket.ClosePolicyViolation, "ping flood", nil)
		}
		return nil
	}
	err := c.s.WebsocketConnection().WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.r.cfg.WriteWait))
	var ne net.Error
	if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
		return nil // as gorilla's default handler
	}
	return err
}

// write queues a frame without blocking. Frames keep their order. A
// connection whose backlog outgrows OutboundMaxBytes, or OutboundBufferBytes
// while its writer has made no progress for OutboundStall, is evicted;
// frames for an evicted connection are dropped at once.
func (c *Conn) write(b []byte) {
	if c.backlogN.Load() == 0 && !c.evicted.Load() {
		if c.inflight.Add(1) <= c.r.queueLimit {
			_ = c.s.Write(b) // only ErrSessionClosed: nothing left to do
			return
		}
		c.inflight.Add(-1)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.evicted.Load() {
		return
	}
	if len(c.backlog) == 0 && c.take() {
		_ = c.s.Write(b)
		return
	}
	if len(c.backlog) == 0 {
		c.progress = c.r.clock() // the stall clock starts with the backlog
	}
	c.backlog = append(c.backlog, b)
	c.backlogBytes += len(b)
	c.backlogN.Store(int32(len(c.backlog)))
	// The frames in flight may all have been sent between the failed take
	// and the store above, their sent() seeing no backlog: flush now, or b
	// would wait for a sent() that never comes.
	c.flushLocked()
	if c.backlogBytes > c.r.cfg.OutboundBufferBytes && c.stalledLocked() || c.backlogBytes > c.r.cfg.OutboundMaxBytes {
		c.evict()
		c.dropBacklogLocked()
	}
}

// stalledLocked reports whether the writer has written nothing for
// OutboundStall while a backlog waited. The caller holds outMu.
func (c *Conn) stalledLocked() bool {
	return time.Duration(c.r.clock()-c.progress)*time.Millisecond >= c.r.cfg.OutboundStall
}

// dropBacklogLocked forgets every waiting frame of an evicted connection.
// The caller holds outMu.
func (c *Conn) dropBacklogLocked() {
	c.backlog, c.backlogBytes, c.closeMsg = nil, 0, nil
	c.backlogN.Store(0)
}

// take reserves a place in melody's queue.
func (c *Conn) take() bool {
	if c.inflight.Add(1) <= c.r.queueLimit {
		return true
	}
	c.inflight.Add(-1)
	return false
}

// sent runs on melody's writer after each text frame: it frees a place and
// moves waiting frames into the queue.
func (c *Conn) sent() {
	c.inflight.Add(-1)
	c.kickCatchup()
	if c.backlogN.Load() == 0 {
		return
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.progress = c.r.clock()
	c.flushLocked()
}

// flushLocked moves waiting frames into melody's queue while it has room.
// The caller holds outMu.
func (c *Conn) flushLocked() {
	if c.evicted.Load() {
		c.dropBacklogLocked()
		return
	}
	for len(c.backlog) > 0 {
		b := c.backlog[0]
		if b == nil { // the close frame: nothing follows it
			c.backlog = nil
			_ = c.s.CloseWithMsg(c.closeMsg)
			break
		}
		if !c.take() {
			break
		}
		c.backlog[0] = nil
		c.backlog = c.backlog[1:]
		c.backlogBytes -= len(b)
		_ = c.s.Write(b)
	}
	if len(c.backlog) == 0 {
		c.backlog = nil // give the memory back
	}
	c.backlogN.Store(int32(len(c.backlog)))
}

// close sends frame (if any), then a close frame with code, once. Both go
// through the outbound queue, after what is already waiting, so the client
// reads them in order.
func (c *Conn) close(code int, reason string, frame []byte) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.setReason(reason)
	if frame != nil {
		c.write(frame)
	}
	msg := melody.FormatCloseMessage(code, reason)
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if len(c.backlog) == 0 {
		_ = c.s.CloseWithMsg(msg)
		return
	}
	c.closeMsg = msg
	c.backlog = append(c.backlog, nil)
	c.backlogN.Store(int32(len(c.backlog)))
	c.flushLocked()
}

// closeWithError sends an error frame with code and closes the connection.
func (c *Conn) closeWithError(code string, closeCode int) {
	c.r.metrics.errorSent(code)
	c.close(closeCode, code, errorFrame(code, errorMessages[code], nil, nil))
}

// evict closes a slow consumer from another goroutine, writing the close
// frame straight to the socket: its outbound queue is full, so a queued
// close would be dropped (and melody's Close from the error handler recurses).
// It has its own flag rather than closing's, so that a close whose frame was
// dropped by the full queue still ends in an eviction.
//
// The writer holds the socket until its current frame is written or
// WriteWait passes, so the close frame waits as long: a client that catches
// up within that time reads why it was closed instead of a bare EOF.
func (c *Conn) evict() {
	if !c.evicted.CompareAndSwap(false, true) {
		return
	}
	c.r.metrics.evictions.Inc()
	c.closing.Store(true)
	c.setReason("slow_consumer")
	ws := c.s.WebsocketConnection()
	deadline := time.Now().Add(c.r.cfg.WriteWait)
	go func() {
		msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "slow consumer")
		_ = ws.WriteControl(websocket.CloseMessage, msg, deadline) // the socket is closed next either way
		_ = ws.Close()
	}()
}

func (c *Conn) setReason(reason string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.mu.Unlock()
}

// stopTimers stops the online and expiry timers.
func (c *Conn) stopTimers() {
	c.mu.Lock()
	if c.onlineTimer != nil {
		c.onlineTimer.Stop()
		c.onlineTimer = nil // an idle connection need not keep it
	}
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	c.mu.Unlock()
}

// index adds an online connection to the local indexes and queues ready,
// its first frame, under the same lock: a delivery either misses c or is
// queued after ready, and whatever is routed once the client has seen
// ready reaches it. (Writes only queue, so holding the lock is cheap.)
//
// The indexes are two maps of slices (by action and by user) rather than a
// map of users per action: a one-entry Go map costs ~300 bytes, which every
// idle connection in an action of its own would pay. A direct message scans
// the user's connections, of which there are few.
func (r *Router) index(c *Conn, ready []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.write(ready)
	all := r.actions[c.action]
	c.pos = int32(len(all))
	r.actions[c.action] = append(all, c)
	us := r.users[c.user]
	c.upos = int32(len(us))
	r.users[c.user] = append(us, c)
	r.metrics.users.Set(float64(len(r.users)))
}

// unindex removes an online connection from the local indexes.
func (r *Router) unindex(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if all, ok := r.actions[c.action]; ok {
		if all = removeConn(all, c.pos, func(o *Conn, i int32) { o.pos = i }); len(all) == 0 {
			delete(r.actions, c.action)
		} else {
			r.actions[c.action] = all
		}
	}
	if us, ok := r.users[c.user]; ok {
		if us = removeConn(us, c.upos, func(o *Conn, i int32) { o.upos = i }); len(us) == 0 {
			delete(r.users, c.user)
		} else {
			r.users[c.user] = us
		}
	}
	r.metrics.users.Set(float64(len(r.users)))
}

// removeConn removes s[i] by moving the last element into its place, and
// tells the moved connection its new position.
func removeConn(s []*Conn, i int32, moved func(*Conn, int32)) []*Conn {
	last := int32(len(s) - 1)
	s[i] = s[last]
	moved(s[i], i)
	s[last] = nil
	s = s[:last]
	if cap(s) > 64 && len(s) < cap(s)/4 {
		s = slices.Clone(s) // give a drained action's memory back
	}
	return s
}

// deliverLocal writes e's payload to the local connections it targets and
// returns how many it reached. Writes only queue (they never block), so they
// happen under the read lock instead of copying the recipients per message.
func (r *Router) deliverLocal(e *Envelope) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	if e.User != "" {
		var seq int64 // a kept direct message's number (mailbox.go)
		if r.mbox != nil && e.Kind == KindMessage {
			seq = mailSeq(e.Payload)
		}
		for _, c := range r.users[e.User] {
			if c.action == e.Action && c.id != e.Exclude {
				c.writeMail(e.Payload, seq)
				n++
			}
		}
		return n
	}
	held := r.mbox != nil && e.Kind == KindMessage // behind a catch-up's kept frames (mailbox.go)
	for _, c := range r.actions[e.Action] {
		if c.id != e.Exclude {
			if held {
				c.writeMail(e.Payload, 0)
			} else {
				c.write(e.Payload)
			}
			n++
		}
	}
	return n
}

// disconnectLocal closes the local connections that a disconnect envelope
// targets and returns how many.
func (r *Router) disconnectLocal(e *Envelope) int {
	conns := r.localConns(e)
	for _, c := range conns {
		if e.Kind == KindBan {
			r.ban(c, string(e.Payload))
		} else {
			r.disconnect(c, string(e.Payload))
		}
	}
	return len(conns)
}

// localConns returns the local online connections matching the target of a
// disconnect envelope.
func (r *Router) localConns(e *Envelope) []*Conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*Conn
	switch {
	case e.Conn != "":
		if c := r.conns[e.Conn]; c != nil {
			out = append(out, c)
		}
	case e.User != "":
		for _, c := range r.users[e.User] {
			if e.Action == "" || c.action == e.Action {
				out = append(out, c)
			}
		}
	default:
		out = append(out, r.actions[e.Action]...)
	}
	return out
}
