package routing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboard/switchboard/session"
)

// ErrInvalid is wrapped by the errors of the server API methods when an
// argument is malformed (an action, a user id, a message that is not a JSON
// object). The error's text says what is wrong and is safe to show.
var ErrInvalid = errors.New("routing: invalid argument")

// invalidError is an ErrInvalid with a message for the API's caller.
type invalidError string

func (e invalidError) Error() string        { return string(e) }
func (e invalidError) Is(target error) bool { return target == ErrInvalid }

// DefaultDisconnectReason is the reason sent to connections that the server
// API disconnects without giving one.
const DefaultDisconnectReason = "disconnected by the server"

// maxReasonLen is the longest disconnect reason: it is also the close
// frame's reason, whose payload holds at most 125 bytes with the 2-byte code.
const maxReasonLen = 123

// Publish delivers obj, a JSON object, as a message from the server (it has
// no `from`) to every connection of action, or only to the connections of
// user to in action when to is not empty, on every node. The message is obj
// with `action`, `ts` (Unix ms) and `to` (when set) written by the server,
// whatever obj held for them or for `from`, and `type` "message" when obj
// has none. It returns the number of connections the message was handed to,
// cluster-wide; when it cannot reach the other nodes, it returns the local
// count with an error wrapping ErrBrokerUnavailable.
func (r *Router) Publish(ctx context.Context, action, to string, obj []byte) (int, error) {
	if !ValidAction(action) {
		return 0, invalidError(errActionText)
	}
	if to != "" && !ValidUserID(to) {
		return 0, invalidError(errToText)
	}
	payload, err := apiMessage(action, to, obj, time.Now().UnixMilli())
	if err != nil {
		return 0, err
	}
	e := &Envelope{Kind: KindMessage, Origin: r.node, Action: action, User: to, Payload: payload}
	local := r.deliverLocal(e)
	r.metrics.delivered[deliveryAPI].Add(float64(local))
	n, err := r.publish(ctx, e, local)
	if err != nil {
		if errors.Is(err, ErrBrokerUnavailable) {
			r.metrics.publishFailed.Inc()
		}
		return local, err
	}
	return n, nil
}

// publish hands e to the other nodes and waits for its cluster-wide count.
func (r *Router) publish(ctx context.Context, e *Envelope, local int) (int, error) {
	res := make(chan routed, 1)
	r.broker.Publish(e, local, func(n int, err error) { res <- routed{n, err} })
	select {
	case x := <-res:
		return x.n, x.err
	case <-ctx.Done():
		return local, ctx.Err()
	}
}

// Presence returns the distinct user ids online in action (sorted, never
// nil) and its number of connections, cluster-wide.
func (r *Router) Presence(ctx context.Context, action string) (users []string, conns int, err error) {
	if !ValidAction(action) {
		return nil, 0, invalidError(errActionText)
	}
	m, err := r.store.ActionConns(ctx, action)
	if err != nil {
		r.metrics.storeErrors.Inc()
		return nil, 0, err
	}
	return session.DistinctUsers(m), len(m), nil
}

// UserConnections returns the bindings of user's connections in every
// action, cluster-wide, oldest first (never nil).
func (r *Router) UserConnections(ctx context.Context, user string) ([]session.Binding, error) {
	if !ValidUserID(user) {
		return nil, invalidError(errUserText)
	}
	bs, err := r.store.UserBindings(ctx, user)
	if err != nil {
		r.metrics.storeErrors.Inc()
		return nil, err
	}
	if bs == nil {
		bs = []session.Binding{}
	}
	slices.SortFunc(bs, func(a, b session.Binding) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ConnID, b.ConnID)
	})
	return bs, nil
}

// DisconnectAction disconnects every connection of action, cluster-wide:
// each gets `{"type":"status","status":"disconnected","reason":reason}`,
// then close 1000. An empty reason means DefaultDisconnectReason. It returns
// how many connections the store held for action.
func (r *Router) DisconnectAction(ctx context.Context, action, reason string) (int, error) {
	if !ValidAction(action) {
		return 0, invalidError(errActionText)
	}
	reason, err := disconnectReason(reason)
	if err != nil {
		return 0, err
	}
	n, err := r.store.CountAction(ctx, action)
	if err != nil {
		r.metrics.storeErrors.Inc()
		return 0, err
	}
	return n, r.disconnectTarget(ctx, &Envelope{Kind: KindDisconnect, Origin: r.node, Action: action, Payload: []byte(reason)})
}

// DisconnectUser disconnects every connection of user, in every action,
// cluster-wide, as DisconnectAction does. It returns how many connections
// the store held for user.
func (r *Router) DisconnectUser(ctx context.Context, user, reason string) (int, error) {
	if !ValidUserID(user) {
		return 0, invalidError(errUserText)
	}
	reason, err := disconnectReason(reason)
	if err != nil {
		return 0, err
	}
	bs, err := r.store.UserBindings(ctx, user)
	if err != nil {
		r.metrics.storeErrors.Inc()
		return 0, err
	}
	return len(bs), r.disconnectTarget(ctx, &Envelope{Kind: KindDisconnect, Origin: r.node, User: user, Payload: []byte(reason)})
}

// DisconnectConn disconnects one connection, on whichever node holds it, as
// DisconnectAction does. An unknown connection id is an error wrapping
// session.ErrNotFound. It returns 1.
func (r *Router) DisconnectConn(ctx context.Context, connID, reason string) (int, error) {
	if !validConnID(connID) {
		return 0, invalidError(errConnText)
	}
	reason, err := disconnectReason(reason)
	if err != nil {
		return 0, err
	}
	b, err := r.store.Get(ctx, connID)
	if err != nil {
		if !errors.Is(err, session.ErrNotFound) {
			r.metrics.storeErrors.Inc()
		}
		return 0, err
	}
	// Origin is the node holding the connection: the envelope goes to its
	// control topic only.
	return 1, r.disconnectTarget(ctx, &Envelope{Kind: KindDisconnect, Origin: b.Node, Conn: connID, Payload: []byte(reason)})
}

// disconnectTarget closes the local connections e targets at once, then
// has the other nodes close theirs.
func (r *Router) disconnectTarget(ctx context.Context, e *Envelope) error {
	local := r.deliverRemote(e) // handles KindDisconnect whatever its origin
	if e.Conn != "" && e.Origin == r.node {
		return nil // the connection was here
	}
	_, err := r.publish(ctx, e, local)
	if errors.Is(err, ErrBrokerUnavailable) {
		r.metrics.publishFailed.Inc()
	}
	return err
}

// disconnectReason checks a disconnect reason, defaulting an empty one.
func disconnectReason(reason string) (string, error) {
	if reason == "" {
		return DefaultDisconnectReason, nil
	}
	if len(reason) > maxReasonLen || !ValidUserID(reason) {
		return "", invalidError(fmt.Sprintf("reason must be 1-%d bytes of UTF-8 without control characters", maxReasonLen))
	}
	return reason, nil
}

// validConnID reports whether id looks like a connection id (newConnID:
// URL-safe base64).
func validConnID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Texts of the API's validation errors.
const (
	errActionText = "action must be 1-64 characters of A-Z a-z 0-9 _ . : -"
	errUserText   = "user id must be 1-256 bytes of UTF-8 without control characters"
	errToText     = "to must be a user id: a string of 1-256 bytes of UTF-8 without control characters"
	errConnText   = "connection id must be 1-64 characters of A-Z a-z 0-9 _ -"
)

// apiMessage builds the message the server API delivers: obj without
// `from`, with `action`, `ts` and `to` (if not empty) set by the server
// (whatever obj held for them, in any letter case, is dropped), and `type`
// "message" when obj has none. obj must be one JSON object; its
// `type`, when present, a string that is not reserved.
func apiMessage(action, to string, obj []byte, ts int64) ([]byte, error) {
	if !utf8.Valid(obj) {
		// Browsers fail a connection that receives invalid UTF-8 (1007).
		return nil, invalidError("the message must be valid UTF-8")
	}
	f, ok := parseObject(obj)
	if !ok {
		return nil, invalidError("the message must be one JSON object")
	}
	if f.typ != nil {
		typ, ok := stringValue(f.typ)
		switch {
		case !ok:
			return nil, invalidError("type must be a string")
		case reserved[typ]:
			return nil, invalidError(fmt.Sprintf("type %q is reserved for the server", typ))
		}
	}
	const typeMember = `,"type":"message"`
	out := make([]byte, 0, len(obj)+len(action)+len(to)+48+len(typeMember))
	out = append(out, `{"action":`...)
	out = appendJSONString(out, action)
	out = append(out, `,"ts":`...)
	out = strconv.AppendInt(out, ts, 10)
	if to != "" {
		out = append(out, `,"to":`...)
		out = appendJSONString(out, to)
	}
	for key, val := range members(obj) {
		if !apiDropped(key) {
			out = appendMember(out, key, val)
		}
	}
	if f.typ == nil {
		out = append(out, typeMember...)
	}
	return append(out, '}'), nil
}

var nameTo = []byte("to")

// apiDropped reports whether apiMessage leaves out the member with the raw
// key: what stamp drops (from, action, ts and case variants of them and of
// type), and to in any letter case, which the server sets.
func apiDropped(key []byte) bool {
	return dropped(key) || bytes.EqualFold(memberName(key), nameTo)
}

// member returns the raw value of the last top-level member name of the
// JSON object b (which passed parseObject), or nil.
func member(b []byte, name string) []byte {
	var v []byte
	for key, val := range members(b) {
		if keyIs(key, name) {
			v = val
		}
	}
	return v
}

// fromPrefix starts every message a client sent (see stampPrefix).
var fromPrefix = []byte(`{"from":`)

// deliveryKind is the kind label of switchboard_messages_delivered_total for
// a KindMessage envelope: messages from the server API have no `from`,
// client messages always start with it.
func deliveryKind(e *Envelope) string {
	switch {
	case !bytes.HasPrefix(e.Payload, fromPrefix):
		return deliveryAPI
	case e.User != "":
		return deliveryDirect
	default:
		return deliveryBroadcast
	}
}

// API returns the server API of SPEC section 7, to be mounted at /api/:
//
//	POST   /api/publish                     {"action","to"?,…} → {"delivered":N}
//	GET    /api/actions/{action}            → {"action","users":[…],"connections":N}
//	GET    /api/users/{user_id}             → {"user_id","connections":[…]}
//	DELETE /api/actions/{action}            → {"disconnected":N}
//	DELETE /api/users/{user_id}             → {"disconnected":N}
//	DELETE /api/connections/{connection_id} → {"disconnected":1}
//
// Every request needs `Authorization: Bearer {adminToken}` (401 otherwise);
// the token is compared in constant time. DELETE calls take an optional
// reason, as the query parameter `reason` or a JSON body {"reason":"…"}.
// Errors are JSON {"error":"…"}: 400 for a bad body or id, 404 for an unknown
// connection id or path, 405 for a wrong method, 413 for a body over
// MaxMessageBytes, 503 when the store or the other nodes cannot be reached.
// An empty adminToken serves nothing: every request gets 404.
func (r *Router) API(adminToken string) http.Handler {
	if adminToken == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusNotFound, apiError{"not found"})
		})
	}
	a := &api{r: r, token: sha256.Sum256([]byte(adminToken))}
	mux := http.NewServeMux()
	mux.Handle("/api/publish", methods{http.MethodPost: a.call("publish", a.publish)})
	mux.Handle("/api/actions/{action}", methods{
		http.MethodGet:    a.call("presence", a.presence),
		http.MethodDelete: a.call("disconnect_action", a.disconnectAction),
	})
	mux.Handle("/api/users/{user_id}", methods{
		http.MethodGet:    a.call("user_connections", a.userConnections),
		http.MethodDelete: a.call("disconnect_user", a.disconnectUser),
	})
	mux.Handle("/api/connections/{connection_id}", methods{
		http.MethodDelete: a.call("disconnect_connection", a.disconnectConn),
	})
	mux.Handle("/api/", a.call("other", func(http.ResponseWriter, *http.Request) (int, any) {
		return http.StatusNotFound, apiError{"not found: see the server API in docs/operations.md"}
	}))
	return a.authenticate(mux)
}

// api serves the server API for one Router.
type api struct {
	r     *Router
	token [sha256.Size]byte // SHA-256 of the admin token
}

type apiError struct {
	Error string `json:"error"`
}

// apiFunc handles one call and returns the status and the JSON body.
type apiFunc func(w http.ResponseWriter, req *http.Request) (int, any)

// authenticate refuses requests without the admin token. Comparing hashes
// keeps the comparison constant-time whatever the lengths.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		scheme, tok, ok := strings.Cut(req.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			a.r.metrics.apiRequest("unauthorized", http.StatusUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
			writeJSON(w, http.StatusUnauthorized, apiError{"missing Authorization: Bearer <ADMIN_TOKEN> header"})
			return
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 {
			a.r.metrics.apiRequest("unauthorized", http.StatusUnauthorized)
			a.r.log.Warn("server API: wrong admin token", "remote", req.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, apiError{"wrong admin token"})
			return
		}
		next.ServeHTTP(w, req)
	})
}

// methods dispatches on the request method; others get 405.
type methods map[string]http.Handler

func (m methods) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if h, ok := m[req.Method]; ok {
		h.ServeHTTP(w, req)
		return
	}
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, apiError{fmt.Sprintf("method %s not allowed; use %s", req.Method, strings.Join(allow, " or "))})
}

// call runs f with the request's context bounded by the store timeout,
// writes its answer and counts it.
func (a *api) call(name string, f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), a.r.cfg.StoreTimeout)
		defer cancel()
		status, body := f(w, req.WithContext(ctx))
		a.r.metrics.apiRequest(name, status)
		writeJSON(w, status, body)
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil { // only our own types are marshalled
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client went away: nothing to do
}

// fail maps an error of the Router's API methods to a status and body.
func (a *api) fail(err error) (int, any) {
	var inv invalidError
	switch {
	case errors.As(err, &inv):
		return http.StatusBadRequest, apiError{string(inv)}
	case errors.Is(err, session.ErrNotFound):
		return http.StatusNotFound, apiError{"no such connection"}
	case errors.Is(err, session.ErrUnavailable):
		return http.StatusServiceUnavailable, apiError{"unavailable: the shared store cannot be reached; retry"}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, apiError{"unavailable: the shared store or the other nodes did not answer in time; retry"}
	case errors.Is(err, ErrBrokerUnavailable):
		return http.StatusServiceUnavailable, apiError{"unavailable: the other nodes cannot be reached; retry"}
	case errors.Is(err, context.Canceled):
		return 499, apiError{"request canceled"} // nginx's "client closed request"; nobody reads it
	default:
		a.r.log.Error("server API failed", "err", err)
		return http.StatusInternalServerError, apiError{"internal error"}
	}
}

// readBody reads the request body, at most MaxMessageBytes. status is not
// 0 when it failed.
func (a *api) readBody(w http.ResponseWriter, req *http.Request) (b []byte, status int, body any) {
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, a.r.cfg.MaxMessageBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, apiError{fmt.Sprintf("body larger than MAX_MESSAGE_BYTES (%d bytes)", a.r.cfg.MaxMessageBytes)}
		}
		return nil, http.StatusBadRequest, apiError{"cannot read the body"}
	}
	return b, 0, nil
}

func (a *api) publish(w http.ResponseWriter, req *http.Request) (int, any) {
	b, status, body := a.readBody(w, req)
	if status != 0 {
		return status, body
	}
	if !utf8.Valid(b) {
		return http.StatusBadRequest, apiError{"the body must be valid UTF-8"}
	}
	if _, ok := parseObject(b); !ok {
		return http.StatusBadRequest, apiError{"the body must be one JSON object"}
	}
	rawAction := member(b, "action")
	if rawAction == nil {
		return http.StatusBadRequest, apiError{"missing action"}
	}
	action, ok := stringValue(rawAction)
	if !ok || !ValidAction(action) {
		return http.StatusBadRequest, apiError{errActionText}
	}
	to := ""
	if raw := member(b, "to"); raw != nil {
		if to, ok = stringValue(raw); !ok || !ValidUserID(to) {
			return http.StatusBadRequest, apiError{errToText}
		}
	}
	n, err := a.r.Publish(req.Context(), action, to, b)
	if err != nil {
		status, body := a.fail(err)
		if status == http.StatusServiceUnavailable {
			// Delivered locally, maybe not elsewhere: say how far it got.
			return status, struct {
				Error     string `json:"error"`
				Delivered int    `json:"delivered"`
			}{body.(apiError).Error, n}
		}
		return status, body
	}
	return http.StatusOK, struct {
		Delivered int `json:"delivered"`
	}{n}
}

func (a *api) presence(_ http.ResponseWriter, req *http.Request) (int, any) {
	action := req.PathValue("action")
	users, n, err := a.r.Presence(req.Context(), action)
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		Action      string   `json:"action"`
		Users       []string `json:"users"`
		Connections int      `json:"connections"`
	}{action, users, n}
}

// apiConn is one connection in GET /api/users/{user_id}.
type apiConn struct {
	ConnectionID string `json:"connection_id"`
	Action       string `json:"action"`
	Node         string `json:"node"`
	ConnectedAt  int64  `json:"connected_at"` // Unix ms
}

func (a *api) userConnections(_ http.ResponseWriter, req *http.Request) (int, any) {
	user := req.PathValue("user_id")
	bs, err := a.r.UserConnections(req.Context(), user)
	if err != nil {
		return a.fail(err)
	}
	conns := make([]apiConn, len(bs))
	for i, b := range bs {
		conns[i] = apiConn{b.ConnID, b.Action, b.Node, b.ConnectedAt.UnixMilli()}
	}
	return http.StatusOK, struct {
		UserID      string    `json:"user_id"`
		Connections []apiConn `json:"connections"`
	}{user, conns}
}

// reason reads the optional disconnect reason of a DELETE: the query
// parameter `reason`, else a JSON body {"reason":"…"}.
func (a *api) reason(w http.ResponseWriter, req *http.Request) (reason string, status int, body any) {
	if q := req.URL.Query(); q.Has("reason") {
		return q.Get("reason"), 0, nil
	}
	b, status, body := a.readBody(w, req)
	if status != 0 || len(bytes.TrimSpace(b)) == 0 {
		return "", status, body
	}
	var v struct {
		Reason *string `json:"reason"`
	}
	if _, ok := parseObject(b); !ok || json.Unmarshal(b, &v) != nil {
		return "", http.StatusBadRequest, apiError{`the body must be empty or a JSON object {"reason":"…"}`}
	}
	if v.Reason == nil {
		return "", 0, nil
	}
	if *v.Reason == "" {
		return "", http.StatusBadRequest, apiError{"reason must not be empty"}
	}
	return *v.Reason, 0, nil
}

func (a *api) disconnected(n int, err error) (int, any) {
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		Disconnected int `json:"disconnected"`
	}{n}
}

func (a *api) disconnectAction(w http.ResponseWriter, req *http.Request) (int, any) {
	reason, status, body := a.reason(w, req)
	if status != 0 {
		return status, body
	}
	return a.disconnected(a.r.DisconnectAction(req.Context(), req.PathValue("action"), reason))
}

func (a *api) disconnectUser(w http.ResponseWriter, req *http.Request) (int, any) {
	reason, status, body := a.reason(w, req)
	if status != 0 {
		return status, body
	}
	return a.disconnected(a.r.DisconnectUser(req.Context(), req.PathValue("user_id"), reason))
}

func (a *api) disconnectConn(w http.ResponseWriter, req *http.Request) (int, any) {
	reason, status, body := a.reason(w, req)
	if status != 0 {
		return status, body
	}
	return a.disconnected(a.r.DisconnectConn(req.Context(), req.PathValue("connection_id"), reason))
}
