package routing

import (
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
	// needed) until the writer reports them sent. A backlog over
	// Config.OutboundBufferBytes makes the connection a slow consumer.
	inflight      atomic.Int32 // frames handed to melody, not yet written
	backlogN      atomic.Int32 // len(backlog), for the lock-free fast path
	outMu         sync.Mutex   // guards backlog, backlogBytes, closeMsg
	backlog       [][]byte     // nil entry: the close frame closeMsg
	backlogBytes  int
	closeMsg      []byte
	evicted       atomic.Bool // evict has begun
	limiter       *rate.Limiter
	publishFailed func(int, error) // c.reportPublishFailure, bound once

	// Set before the state becomes stateOnline.
	user, action string
	prefix       []byte // `{"from":…,"action":…,"ts":`
	connectedAt  time.Time
	authed       bool // the user id comes from a token
	pos          int  // index in the action's slice, guarded by Router.mu

	mu          sync.Mutex // guards the timers and reason
	onlineTimer *time.Timer
	expiryTimer *time.Timer
	expGen      int
	reason      string // why it was closed, for metrics
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

// write queues a frame without blocking. Frames keep their order; a
// connection whose backlog outgrows OutboundBufferBytes is evicted.
func (c *Conn) write(b []byte) {
	if c.backlogN.Load() == 0 {
		if c.inflight.Add(1) <= c.r.queueLimit {
			_ = c.s.Write(b) // only ErrSessionClosed: nothing left to do
			return
		}
		c.inflight.Add(-1)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if len(c.backlog) == 0 && c.take() {
		_ = c.s.Write(b)
		return
	}
	c.backlog = append(c.backlog, b)
	c.backlogBytes += len(b)
	c.backlogN.Store(int32(len(c.backlog)))
	if c.backlogBytes > c.r.cfg.OutboundBufferBytes {
		c.evict()
	}
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
	if c.backlogN.Load() == 0 {
		return
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
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
	}
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	c.mu.Unlock()
}

// actionConns are the local connections of one action.
type actionConns struct {
	all   []*Conn
	users map[string][]*Conn
}

// index adds an online connection to the local indexes and queues ready,
// its first frame, under the same lock: a delivery either misses c or is
// queued after ready, and whatever is routed once the client has seen
// ready reaches it. (Writes only queue, so holding the lock is cheap.)
func (r *Router) index(c *Conn, ready []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.write(ready)
	g := r.actions[c.action]
	if g == nil {
		g = &actionConns{users: make(map[string][]*Conn)}
		r.actions[c.action] = g
	}
	c.pos = len(g.all)
	g.all = append(g.all, c)
	g.users[c.user] = append(g.users[c.user], c)
	r.users[c.user]++
	r.metrics.users.Set(float64(len(r.users)))
}

// unindex removes an online connection from the local indexes.
func (r *Router) unindex(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.actions[c.action]
	if g == nil {
		return
	}
	last := len(g.all) - 1
	g.all[c.pos] = g.all[last]
	g.all[c.pos].pos = c.pos
	g.all[last] = nil
	g.all = g.all[:last]
	us := g.users[c.user]
	for i, o := range us {
		if o == c {
			us[i] = us[len(us)-1]
			us[len(us)-1] = nil
			us = us[:len(us)-1]
			break
		}
	}
	if len(us) == 0 {
		delete(g.users, c.user)
	} else {
		g.users[c.user] = us
	}
	if len(g.all) == 0 {
		delete(r.actions, c.action)
	}
	if r.users[c.user]--; r.users[c.user] <= 0 {
		delete(r.users, c.user)
	}
	r.metrics.users.Set(float64(len(r.users)))
}

// deliverLocal writes e's payload to the local connections it targets and
// returns how many it reached. Writes only queue (they never block), so they
// happen under the read lock instead of copying the recipients per message.
func (r *Router) deliverLocal(e *Envelope) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	g := r.actions[e.Action]
	if g == nil {
		return 0
	}
	conns := g.all
	if e.User != "" {
		conns = g.users[e.User]
	}
	n := 0
	for _, c := range conns {
		if c.id != e.Exclude {
			c.write(e.Payload)
			n++
		}
	}
	return n
}

// localConns returns the local online connections matching the target of a
// disconnect envelope.
func (r *Router) localConns(e *Envelope) []*Conn {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e.Conn != "" {
		if c := r.conns[e.Conn]; c != nil {
			return []*Conn{c}
		}
		return nil
	}
	if e.User != "" && e.Action == "" {
		var out []*Conn
		for _, g := range r.actions {
			out = append(out, g.users[e.User]...)
		}
		return out
	}
	g := r.actions[e.Action]
	if g == nil {
		return nil
	}
	if e.User != "" {
		return append([]*Conn(nil), g.users[e.User]...)
	}
	return append([]*Conn(nil), g.all...)
}
