package routing

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"

	"github.com/switchboard/switchboard/auth"
	"github.com/switchboard/switchboard/session"
)

const connKey = "sb.conn"

// ServeHTTP upgrades `GET /ws` and `GET /ws/{action}` to WebSocket.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	preset := ""
	switch {
	case req.URL.Path == "/ws":
	case strings.HasPrefix(req.URL.Path, "/ws/"):
		preset = strings.TrimPrefix(req.URL.Path, "/ws/")
		if !ValidAction(preset) {
			http.Error(w, "invalid action: 1-64 characters of A-Z a-z 0-9 _ . : -", http.StatusBadRequest)
			return
		}
	default:
		http.NotFound(w, req)
		return
	}
	if !websocket.IsWebSocketUpgrade(req) {
		notWebSocket(w)
		return
	}
	if !r.checkOrigin(req) {
		r.refuseOrigin(w, req)
		return
	}
	if !r.admit(w, req) { // limits.go: refused before any work
		return
	}
	c := &Conn{r: r, id: newConnID(), presetAction: preset}
	if tok := auth.TokenFromRequest(req); tok != "" && r.verify.Enabled() {
		claims, err := r.verify.Verify(req.Context(), tok)
		if err != nil {
			r.door.leave()
			r.metrics.errorSent(CodeUnauthorized)
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		c.upgradeToken = &claims
	}

	r.mu.Lock()
	if r.closing.Load() {
		r.mu.Unlock()
		r.door.leave()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	// The connection is served on a goroutine of its own, and ServeHTTP
	// returns as soon as the upgrade has hijacked it: net/http's connection
	// goroutine then ends and frees its 4 KiB read and write buffers and
	// its grown stack, about half of an idle connection's memory.
	upgraded := make(chan struct{})
	c.upgraded = upgraded
	go func() {
		defer r.wg.Done()
		defer r.door.leave()
		// melody returns an error only before the session exists, when
		// onConnect has not run (onConnect drops c.upgraded, so that an
		// idle connection does not keep it); the upgrader has answered
		// with an HTTP error.
		if err := r.m.HandleRequestWithKeys(guardHijack{w}, req, map[string]any{connKey: c}); err != nil { // frames.go
			close(c.upgraded)
		}
	}()
	<-upgraded
}

// newConnID returns a random, URL-safe connection id.
func newConnID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// checkOrigin allows requests without Origin (non-browser clients), from the
// server's own host, and from ALLOWED_ORIGINS.
func (r *Router) checkOrigin(req *http.Request) bool {
	origin := req.Header.Get("Origin")
	if origin == "" || r.anyOrig {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, req.Host) {
		return true
	}
	return r.origins[strings.ToLower(u.Scheme+"://"+u.Host)]
}

// connOf returns the connection of s, or nil once it has disconnected
// (melody's writer may still report a frame sent or an error after that).
func (r *Router) connOf(s *melody.Session) *Conn {
	c, _ := r.sessions.Load(s)
	conn, _ := c.(*Conn)
	return conn
}

func (r *Router) onConnect(s *melody.Session) {
	c := s.Keys[connKey].(*Conn) //nolint:forcetypeassert // set by ServeHTTP
	c.s = s
	s.WebsocketConnection().SetPingHandler(c.onPing) // before melody's reader starts
	// melody keeps the upgrade request and the keys for the session's life.
	// Nothing reads the request after the handshake (its headers cost
	// ~2 KiB per idle connection), and a one-entry map costs ~300 bytes
	// where an entry in the router's session map costs a tenth of that.
	r.sessions.Store(s, c)
	s.Request, s.Keys = nil, nil
	close(c.upgraded) // ServeHTTP may return: the connection is hijacked
	c.upgraded = nil
	r.mu.Lock()
	r.conns[c.id] = c
	closing := r.closing.Load()
	r.mu.Unlock()
	r.metrics.connections.Inc()
	if closing {
		c.close(websocket.CloseGoingAway, "server shutting down", nil)
		return
	}
	c.mu.Lock()
	c.onlineTimer = time.AfterFunc(r.cfg.OnlineTimeout, func() {
		if c.state.CompareAndSwap(stateNew, stateClosed) {
			c.setReason("timeout")
			c.closeWithError(CodeOnlineTimeout, websocket.ClosePolicyViolation)
		}
	})
	c.mu.Unlock()
}

func (r *Router) onDisconnect(s *melody.Session) {
	c := r.connOf(s)
	r.sessions.Delete(s)
	c.stopTimers()
	prev := c.state.Swap(stateClosed)
	r.mu.Lock()
	delete(r.conns, c.id)
	r.mu.Unlock()
	r.metrics.connections.Dec()
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	r.metrics.disconnects.WithLabelValues(reasonLabel(reason)).Inc()
	if v, ok := r.catchups.Load(c); ok {
		r.endCatchup(c, v.(*catchup)) //nolint:forcetypeassert // only *catchup is stored
	}
	if prev != stateOnline {
		return
	}
	r.unindex(c)
	r.broker.Unsubscribe(Topic{Action: c.action})
	r.broker.Unsubscribe(Topic{Action: c.action, User: c.user})
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // the connection is gone; its cleanup outlives the request
	defer cancel()
	removed, err := r.store.Unbind(ctx, c.id)
	switch {
	case errors.Is(err, session.ErrNotFound):
	case err != nil:
		r.metrics.storeErrors.Inc()
		r.addPending(pendingUnbind{conn: c.id, user: c.user, action: c.action, leave: true})
	case removed.Last:
		r.userOffline(c.user, c.action) // Events hook
		r.sendPresenceEvent(ctx, "leave", c.user, c.action, "")
	}
	r.log.Debug("connection closed", "conn", c.id, "reason", reasonLabel(reason))
}

// reasonLabel maps a close reason to a bounded metrics label.
func reasonLabel(reason string) string {
	switch reason {
	case "":
		return "client"
	case "slow_consumer", "timeout", "api", "message_too_big", "invalid_utf8", CodeTooManyConnections, CodeBanned:
		return reason
	case "server shutting down":
		return "shutdown"
	case CodeUnavailable:
		return "unavailable"
	default:
		return "policy"
	}
}

func (r *Router) onError(s *melody.Session, err error) {
	c := r.connOf(s)
	if c == nil {
		return // already disconnected
	}
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		// Runs on the writer's goroutine, possibly under melody's hub lock:
		// only hand off.
		c.evict()
	case errors.Is(err, websocket.ErrReadLimit):
		c.setReason("message_too_big") // gorilla has already sent close 1009
	case isWriteTimeout(err):
		// The socket took no frame within WriteWait: the client stopped
		// reading (with a backlog too small for the stall check). melody
		// closes the connection; count it as what it is.
		if !c.evicted.Load() {
			r.metrics.evictions.Inc()
		}
		c.setReason("slow_consumer")
	}
}

// isWriteTimeout reports whether err is a socket write that timed out.
// gorilla hides the *net.OpError of a timeout behind an error of its own
// that keeps only its text ("write tcp …: i/o timeout", "writev tcp …").
func isWriteTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && strings.HasPrefix(err.Error(), "write")
}

func (r *Router) onBinary(s *melody.Session, _ []byte) {
	c := r.connOf(s)
	switch c.state.Load() {
	case stateNew:
		c.closeWithError(CodeBinaryUnsupported, websocket.ClosePolicyViolation)
	case stateOnline:
		r.metrics.received.Inc()
		if !c.allow() {
			r.sendError(c, CodeRateLimited, nil, nil)
			return
		}
		r.sendError(c, CodeBinaryUnsupported, nil, nil)
	}
}

func (r *Router) onMessage(s *melody.Session, b []byte) {
	c := r.connOf(s)
	if !utf8.Valid(b) {
		c.setReason("invalid_utf8")
		c.close(websocket.CloseInvalidFramePayloadData, "invalid UTF-8", nil)
		return
	}
	switch c.state.Load() {
	case stateNew:
		r.online(c, b)
	case stateOnline:
		r.handle(c, b)
	}
}

// sendError writes an error frame to c. id and to are raw JSON or nil.
func (r *Router) sendError(c *Conn, code string, id, to []byte) {
	r.metrics.errorSent(code)
	c.write(errorFrame(code, errorMessages[code], id, to))
}

// onlineMsg holds the raw values of the first message's members.
type onlineMsg struct {
	Action, UserID, From, Token, Since []byte
}

// readOnline picks the members of online out of b, which passed
// parseObject. It scans instead of decoding with reflection, which keeps the
// connection goroutine's stack (and so every idle connection) small.
func readOnline(b []byte) onlineMsg {
	var m onlineMsg
	for key, val := range members(b) {
		switch {
		case keyIs(key, "action"):
			m.Action = val
		case keyIs(key, "user_id"):
			m.UserID = val
		case keyIs(key, "from"):
			m.From = val
		case keyIs(key, "token"):
			m.Token = val
		case keyIs(key, "since"):
			m.Since = val
		}
	}
	return m
}

func absent(raw []byte) bool { return raw == nil || string(raw) == "null" }

// online binds c as its first message asks, then answers ready.
func (r *Router) online(c *Conn, b []byte) {
	policy := websocket.ClosePolicyViolation
	f, ok := parseObject(b)
	if !ok {
		c.closeWithError(CodeInvalidJSON, policy)
		return
	}
	if typ, _ := stringValue(f.typ); typ != "online" {
		c.closeWithError(CodeNotOnline, policy)
		return
	}
	if !r.running.Load() {
		r.refuseNotRunning(c)
		return
	}
	msg := readOnline(b)

	action := c.presetAction
	if !absent(msg.Action) {
		a, ok := stringValue(msg.Action)
		if !ok || !ValidAction(a) {
			c.closeWithError(CodeInvalidAction, policy)
			return
		}
		if action != "" && a != action {
			c.r.metrics.errorSent(CodeInvalidAction)
			c.close(policy, CodeInvalidAction, errorFrame(CodeInvalidAction,
				"online names another action than the URL path /ws/"+action+"; omit action or connect to /ws/"+a, nil, nil))
			return
		}
		action = a
	}
	if action == "" {
		c.closeWithError(CodeMissingAction, policy)
		return
	}

	rawUser := msg.UserID
	if absent(rawUser) {
		rawUser = msg.From
	}
	user := ""
	if !absent(rawUser) {
		u, ok := stringValue(rawUser)
		if !ok || !ValidUserID(u) {
			c.closeWithError(CodeInvalidUser, policy)
			return
		}
		user = u
	}

	var exp time.Time
	if r.verify.Enabled() { // without auth, a token is ignored
		token := ""
		if !absent(msg.Token) {
			t, ok := stringValue(msg.Token)
			if !ok {
				c.closeWithError(CodeUnauthorized, policy)
				return
			}
			token = t
		}
		claims := c.upgradeToken
		if token != "" {
			vctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
			cl, err := r.verify.Verify(vctx, token)
			cancel()
			if err != nil {
				r.log.Debug("token refused", "conn", c.id, "err", err) // the error never holds the token
				c.closeWithError(CodeUnauthorized, policy)
				return
			}
			claims = &cl
		}
		switch {
		case claims != nil:
			if user != "" && user != claims.UserID {
				c.closeWithError(CodeUserMismatch, policy)
				return
			}
			user, exp, c.authed = claims.UserID, claims.Expiry, true
		case r.cfg.AuthOptional:
			user = c.id // anonymous: nobody can pose as a token holder
		default:
			c.closeWithError(CodeUnauthorized, policy)
			return
		}
	} else if user == "" {
		user = c.id
	}

	if r.mbox != nil && !absent(msg.Since) {
		if _, ok := seqValue(msg.Since); !ok {
			r.metrics.errorSent(CodeInvalidJSON)
			c.close(policy, CodeInvalidJSON, errorFrame(CodeInvalidJSON, "since must be a non-negative integer", nil, nil))
			return
		}
	}

	if !c.state.CompareAndSwap(stateNew, stateBinding) {
		return // timed out meanwhile
	}
	c.stopTimers()
	c.user, c.action = user, action
	c.connectedAt = time.Now()

	timeout := r.cfg.StoreTimeout
	if !r.storeOK.Load() {
		// The heartbeat found the store unreachable: answer unavailable
		// soon rather than after the whole timeout; a store that is back
		// binds well within it.
		timeout = min(timeout, outageStoreTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	// Subscribe before binding, so that nothing sent to the new binding
	// from another node is missed.
	actionTopic, userTopic := Topic{Action: action}, Topic{Action: action, User: user}
	first, err := false, r.broker.Subscribe(ctx, actionTopic)
	if err == nil {
		if err = r.broker.Subscribe(ctx, userTopic); err != nil {
			r.broker.Unsubscribe(actionTopic)
		}
	}
	if err == nil {
		if first, err = r.store.Bind(ctx, c.binding()); err != nil {
			r.broker.Unsubscribe(actionTopic)
			r.broker.Unsubscribe(userTopic)
		}
	}
	if err != nil {
		c.state.Store(stateClosed)
		switch {
		case errors.Is(err, session.ErrTooManyConnections):
			r.metrics.refusals.WithLabelValues(refuseTooManyConnections).Inc()
			c.setReason(CodeTooManyConnections)
			c.closeWithError(CodeTooManyConnections, policy)
		case errors.Is(err, session.ErrBanned):
			r.metrics.refusals.WithLabelValues(refuseBanned).Inc()
			c.setReason(CodeBanned)
			c.closeWithError(CodeBanned, policy)
		default:
			r.metrics.storeErrors.Inc()
			c.closeWithError(CodeUnavailable, websocket.CloseTryAgainLater)
		}
		return
	}

	ready := []byte(`{"type":"ready","connection_id":"` + c.id + `","user_id":`)
	ready = appendJSONString(ready, user)
	ready = append(ready, `,"action":`...)
	ready = appendJSONString(ready, action)
	var cu *catchup
	var from int64
	if r.mbox != nil {
		// Where the catch-up starts is read before indexing (ready says
		// it); the replay reads again once c is indexed (mailbox.go).
		var tail []byte
		if tail, cu, from, err = r.onlineMailbox(ctx, c, msg.Since); err != nil {
			r.metrics.storeErrors.Inc()
			r.broker.Unsubscribe(actionTopic)
			r.broker.Unsubscribe(userTopic)
			if _, uerr := r.store.Unbind(ctx, c.id); uerr != nil && !errors.Is(uerr, session.ErrNotFound) {
				r.addPending(pendingUnbind{conn: c.id, user: c.user, action: c.action})
			}
			c.state.Store(stateClosed)
			c.closeWithError(CodeUnavailable, websocket.CloseTryAgainLater)
			return
		}
		ready = append(ready, tail...)
	}
	ready = append(ready, '}')
	r.index(c, ready)
	c.state.Store(stateOnline)
	if cu != nil {
		r.wg.Add(1) // the connection's own count is held: Wait cannot have returned
		go r.replay(c, cu, from)
	}
	if c.closing.Load() {
		return // closed meanwhile (shutdown): onDisconnect unbinds
	}
	if c.authed {
		c.setExpiry(exp)
	}
	if first {
		r.userOnline(c.binding()) // Events hook
		r.sendPresenceEvent(ctx, "join", user, action, c.id)
	}
	r.log.Debug("connection online", "conn", c.id, "action", action)
}

// binding returns c's binding in the store.
func (c *Conn) binding() session.Binding {
	return session.Binding{ConnID: c.id, UserID: c.user, Action: c.action, Node: c.r.node, ConnectedAt: c.connectedAt}
}

// setExpiry (re)arms the timer that closes c when its token expires. A
// timer replaced by a refresh finds its generation outdated and does nothing.
func (c *Conn) setExpiry(exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
	}
	c.expGen++
	gen := c.expGen
	c.expiryTimer = time.AfterFunc(time.Until(exp.Add(c.r.cfg.TokenLeeway)), func() {
		c.mu.Lock()
		current := c.expGen == gen
		c.mu.Unlock()
		if current {
			c.closeWithError(CodeTokenExpired, websocket.ClosePolicyViolation)
		}
	})
}
