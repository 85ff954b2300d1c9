package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// HandlerFunc handles a custom message type registered with Router.Handle.
// It runs on the connection's read goroutine, so one connection's messages
// are handled one at a time and in order; it should return quickly. A
// returned *Error is sent to the client with its code; any other error is
// sent as `internal` (its text is logged, never shown to the client).
type HandlerFunc func(ctx context.Context, req *Request) error

// Request is one client message of a custom type.
type Request struct {
	// Conn is the sending connection (online).
	Conn *Conn
	// Type is the message's type.
	Type string
	// Message is the client's JSON object as sent. It must not be modified.
	Message []byte

	r  *Router
	f  fields
	id []byte
}

// Reply sends v, marshalled to JSON, to the requesting connection only.
func (q *Request) Reply(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("routing: reply: %w", err)
	}
	q.Conn.write(b)
	return nil
}

// Deliver routes the message as an ordinary one would be (stamped with
// `from`, `action` and `ts`; to its `to` user if set, else to the action)
// and returns how many connections it was handed to, cluster-wide. The
// client gets no ack for it: the handler decides what to reply. When the
// other nodes cannot be reached, the error wraps ErrBrokerUnavailable (the
// message may have reached this node's connections); returned by the
// handler, it reaches the client as unavailable.
func (q *Request) Deliver(ctx context.Context) (int, error) {
	to, ok := "", true
	if q.f.to != nil {
		to, ok = stringValue(q.f.to)
		if !ok || !ValidUserID(to) {
			return 0, &Error{Code: CodeInvalidTo, Message: errorMessages[CodeInvalidTo]}
		}
	}
	return q.r.route(q.Conn, to, stamp(q.Conn.stampPrefix(), q.Message, true, time.Now().UnixMilli()))
}

// Error is a refusal a HandlerFunc returns: the client gets an `error`
// message with Code and Message (and the request's id).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// builtin are the client types the server handles itself.
var builtin = map[string]bool{"online": true, "presence": true, "ping": true, "refresh": true, "message": true,
	"block": true, "unblock": true, "blocks": true}

// Handle registers h for messages whose type is typ (for example "typing").
// Reserved and built-in types cannot be overridden. Call it before serving.
func (r *Router) Handle(typ string, h HandlerFunc) error {
	if typ == "" || reserved[typ] || builtin[typ] || (typ == "read" && r.mbox != nil) {
		return fmt.Errorf("routing: type %q is reserved", typ)
	}
	r.mu.Lock()
	r.cmds[typ] = h
	r.mu.Unlock()
	return nil
}

// handle processes a message from an online connection.
func (r *Router) handle(c *Conn, b []byte) {
	r.metrics.received.Inc()
	allowed := c.allow() // every client message counts, valid or not
	f, ok := parseObject(b)
	id := f.id
	if ok && id != nil && !validID(id) {
		id = nil
	}
	switch {
	case !allowed:
		r.sendError(c, CodeRateLimited, id, nil)
		return
	case !ok:
		r.sendError(c, CodeInvalidJSON, nil, nil)
		return
	case f.id != nil && id == nil:
		r.sendError(c, CodeInvalidID, nil, nil)
		return
	}
	typ := ""
	if f.typ != nil {
		t, ok := stringValue(f.typ)
		if !ok {
			r.sendError(c, CodeInvalidJSON, id, nil)
			return
		}
		typ = t
	}
	switch typ {
	case "", "message":
	case "online":
		r.sendError(c, CodeAlreadyOnline, id, nil)
		return
	case "ping":
		c.write(withID([]byte(`{"type":"pong"`), id))
		return
	case "presence":
		r.presence(c, id)
		return
	case "refresh":
		r.refresh(c, b, id)
		return
	case "block", "unblock", "blocks":
		r.blockRequest(c, typ, b, id)
		return
	default:
		if typ == "read" && r.mbox != nil {
			r.readMsg(c, b, id)
			return
		}
		if reserved[typ] {
			r.sendError(c, CodeReservedType, id, nil)
			return
		}
		r.mu.RLock()
		h := r.cmds[typ]
		r.mu.RUnlock()
		if h != nil {
			r.custom(c, h, typ, b, f, id)
			return
		}
	}
	r.message(c, b, f, id)
}

// withID closes a frame that is still open (`{"type":"pong"`), adding id.
func withID(b, id []byte) []byte {
	if id != nil {
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	return append(b, '}')
}

// message stamps and routes an ordinary message, then acks it.
func (r *Router) message(c *Conn, b []byte, f fields, id []byte) {
	to := ""
	if f.to != nil {
		t, ok := stringValue(f.to)
		if !ok || !ValidUserID(t) {
			r.sendError(c, CodeInvalidTo, id, nil)
			return
		}
		to = t
	}
	out := stamp(c.stampPrefix(), b, f.typ != nil, time.Now().UnixMilli())
	start := time.Now()
	if to != "" {
		res := r.directFrom(c, to, out, id)
		r.metrics.routeLatency.Observe(time.Since(start).Seconds())
		switch {
		case res.dup:
			r.metrics.mailDuplicates.Inc()
			if id != nil {
				c.write(ackSeqFrame(id, 0, res.seq))
			}
		case res.err != nil:
			r.sendError(c, CodeUnavailable, id, nil)
		case r.mbox == nil && res.delivered == 0 && to != c.user:
			r.sendError(c, CodeUserOffline, id, f.to)
		case id != nil && res.seq > 0:
			c.write(ackSeqFrame(id, res.delivered, res.seq))
		case id != nil:
			c.write(ackFrame(id, res.delivered))
		}
		return
	}
	if r.mbox != nil {
		out = dropSeq(out) // only kept direct messages carry a seq
	}
	n, err := r.route(c, "", out)
	r.metrics.routeLatency.Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		r.sendError(c, CodeUnavailable, id, nil)
	case id != nil:
		c.write(ackFrame(id, n))
	}
}

// route delivers a stamped message from c to the action, or to user `to` in
// it: locally at once, then to the other nodes through the broker. It
// returns the number of connections that were handed the message,
// cluster-wide, or an error wrapping ErrBrokerUnavailable when some of its
// recipients could not be reached.
func (r *Router) route(c *Conn, to string, out []byte) (int, error) {
	e := &Envelope{Kind: KindMessage, Origin: r.node, Exclude: c.id, Action: c.action, User: to, Payload: out}
	if to != "" {
		res := r.directFrom(c, to, out, nil)
		return res.delivered, res.err
	}
	local := r.deliverLocal(e)
	kind := deliveryBroadcast
	if to != "" {
		kind = deliveryDirect
	}
	r.metrics.delivered[kind].Add(float64(local))
	remote, err := r.publish(context.Background(), e) //nolint:contextcheck // melody gives no request context; the broker bounds the wait
	return local + remote, err
}

// presence answers with the distinct users of c's action, cluster-wide.
func (r *Router) presence(c *Conn, id []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	if !r.storeOK.Load() {
		// This node's bindings are being rewritten (the store lost them):
		// the store would list none of its users.
		r.sendError(c, CodeUnavailable, id, nil)
		return
	}
	users, err := r.store.ActionUsers(ctx, c.action)
	if err != nil {
		r.metrics.storeErrors.Inc()
		r.sendError(c, CodeUnavailable, id, nil)
		return
	}
	b := []byte(`{"type":"presence","action":`)
	b = appendJSONString(b, c.action)
	b = append(b, `,"users":`...)
	u, _ := json.Marshal(users) // []string always marshals
	b = append(b, u...)
	c.write(withID(b, id))
}

// refresh replaces c's token.
func (r *Router) refresh(c *Conn, b []byte, id []byte) {
	if !r.verify.Enabled() {
		c.write(errorFrame(CodeUnauthorized, "authentication is not enabled on this server", id, nil))
		r.metrics.errorSent(CodeUnauthorized)
		return
	}
	var msg struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(b, &msg) != nil || msg.Token == "" {
		r.sendError(c, CodeUnauthorized, id, nil)
		return
	}
	claims, err := r.verify.Verify(context.Background(), msg.Token) //nolint:contextcheck // bounded by the verifier's own timeouts
	if err != nil {
		r.sendError(c, CodeUnauthorized, id, nil)
		return
	}
	if !c.authed || claims.UserID != c.user {
		r.sendError(c, CodeUserMismatch, id, nil)
		return
	}
	c.setExpiry(claims.Expiry)
	out := []byte(`{"type":"refreshed","exp":`)
	out = strconv.AppendInt(out, claims.Expiry.Unix(), 10)
	c.write(withID(out, id))
}

// custom runs a registered handler.
func (r *Router) custom(c *Conn, h HandlerFunc, typ string, b []byte, f fields, id []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	err := h(ctx, &Request{Conn: c, Type: typ, Message: b, r: r, f: f, id: id})
	if err == nil {
		return
	}
	var e *Error
	switch {
	case errors.As(err, &e):
		r.metrics.errorSent(e.Code)
		c.write(errorFrame(e.Code, e.Message, id, nil))
		return
	case errors.Is(err, ErrBrokerUnavailable): // from Deliver: as for a message
		r.sendError(c, CodeUnavailable, id, nil)
		return
	}
	r.log.Error("custom handler failed", "type", typ, "err", err)
	r.sendError(c, CodeInternal, id, nil)
}

// echoTimeout bounds how long a sender waits for its direct message to
// come back through this node's subscription.
const echoTimeout = 2 * time.Second

// expectEcho returns the channel on which c hears that its direct message
// e reached this node's recipients, or nil when there are none here (or c
// is nil).
func (r *Router) expectEcho(c *Conn, e *Envelope) chan struct{} {
	if c == nil {
		return nil
	}
	r.mu.RLock()
	here := false
	for _, rc := range r.users[e.User] {
		if rc.action == e.Action && rc != c {
			here = true
			break
		}
	}
	r.mu.RUnlock()
	if !here {
		return nil
	}
	c.mu.Lock()
	if c.echo == nil {
		c.echo = make(chan struct{}, 1)
	}
	echo := c.echo
	c.mu.Unlock()
	select {
	case <-echo: // a late echo of an earlier message
	default:
	}
	return echo
}

// awaitEcho waits for the echo, at most echoTimeout.
func (r *Router) awaitEcho(echo chan struct{}) {
	t := time.NewTimer(echoTimeout)
	defer t.Stop()
	select {
	case <-echo:
	case <-t.C:
	}
}

// echoed tells the connection connID that this node's subscription
// delivered its direct message.
func (r *Router) echoed(connID string) {
	r.mu.RLock()
	c := r.conns[connID]
	r.mu.RUnlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	echo := c.echo
	c.mu.Unlock()
	if echo != nil {
		select {
		case echo <- struct{}{}:
		default:
		}
	}
}
