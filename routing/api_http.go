package routing

// The HTTP side of the server API: routes, authentication, JSON bodies and
// errors. The calls themselves are the Router methods in api.go.

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

// API returns the server API (docs/operations.md, "Server API"), to be mounted at /api/:
//
//	POST   /api/publish                     {"action","to"?,…} → {"delivered":N}
//	GET    /api/actions/{action}            → {"action","users":[…],"connections":N}
//	GET    /api/users/{user_id}             → {"user_id","connections":[…]}
//	DELETE /api/actions/{action}            → {"disconnected":N}
//	DELETE /api/users/{user_id}             → {"disconnected":N}
//	DELETE /api/connections/{connection_id} → {"disconnected":1}
//	PUT    /api/users/{user_id}/ban         {"duration","reason"?} → the ban
//	GET    /api/users/{user_id}/ban         → {"user_id","banned",…}
//	DELETE /api/users/{user_id}/ban         → {"user_id","banned":false,"lifted":bool}
//	GET    /api/users/{user_id}/blocks      → {"user_id","blocks":[…]}
//	PUT    /api/users/{user_id}/blocks/{other}, DELETE … → {"user_id","blocks":[…]}
//	GET    /api/users/{user_id}/mailbox?action=A&since=S&limit=N
//	                                        → {"user_id","action","messages":[…],"seq","read","gap"}
//	DELETE /api/users/{user_id}/mailbox[?action=A] → {"deleted":N}
//
// The mailbox calls answer 400 when the mailbox is off (MAILBOX=false).
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
	mux.Handle("/api/users/{user_id}/ban", methods{
		http.MethodPut:    a.call("ban", a.ban),
		http.MethodGet:    a.call("get_ban", a.getBan),
		http.MethodDelete: a.call("unban", a.unban),
	})
	mux.Handle("/api/users/{user_id}/blocks", methods{
		http.MethodGet: a.call("blocks", a.blocks),
	})
	mux.Handle("/api/users/{user_id}/blocks/{other}", methods{
		http.MethodPut:    a.call("block", a.block),
		http.MethodDelete: a.call("unblock", a.unblock),
	})
	mux.Handle("/api/users/{user_id}/mailbox", methods{
		http.MethodGet:    a.call("mailbox_read", a.readMailbox),
		http.MethodDelete: a.call("mailbox_erase", a.eraseMailbox),
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
		return http.StatusBadRequest, apiError{"the body must be one unambiguous JSON object" + ambiguityHint(b)}
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
	n, seq, err := a.r.PublishSeq(req.Context(), action, to, b)
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
	if seq > 0 {
		return http.StatusOK, struct {
			Delivered int   `json:"delivered"`
			Seq       int64 `json:"seq"`
		}{n, seq}
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
	ban, banned, err := a.r.GetBan(req.Context(), user)
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		UserID      string    `json:"user_id"`
		Connections []apiConn `json:"connections"`
		apiBan
	}{user, conns, newAPIBan(ban, banned)}
}

// apiBan is a user's ban state in the API.
type apiBan struct {
	Banned bool   `json:"banned"`
	Until  string `json:"until,omitempty"` // RFC 3339
	Reason string `json:"reason,omitempty"`
}

func newAPIBan(b session.Ban, banned bool) apiBan {
	if !banned {
		return apiBan{}
	}
	return apiBan{Banned: true, Until: b.Until.UTC().Format(time.RFC3339Nano), Reason: b.Reason}
}

func (a *api) ban(w http.ResponseWriter, req *http.Request) (int, any) {
	b, status, body := a.readBody(w, req)
	if status != 0 {
		return status, body
	}
	var v struct {
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}
	if _, ok := parseObject(b); !ok || json.Unmarshal(b, &v) != nil {
		return http.StatusBadRequest, apiError{`the body must be a JSON object {"duration":"1h","reason":"…"}`}
	}
	d, err := time.ParseDuration(v.Duration)
	if err != nil {
		return http.StatusBadRequest, apiError{`duration must be a Go duration such as "30m", "24h" or "720h"`}
	}
	user := req.PathValue("user_id")
	until, n, err := a.r.Ban(req.Context(), user, d, v.Reason)
	if err != nil {
		return a.fail(err)
	}
	ban, _, err := a.r.GetBan(req.Context(), user)
	if err != nil {
		ban = session.Ban{Until: until, Reason: v.Reason}
	}
	return http.StatusOK, struct {
		UserID string `json:"user_id"`
		apiBan
		Disconnected int `json:"disconnected"`
	}{user, newAPIBan(ban, true), n}
}

func (a *api) getBan(_ http.ResponseWriter, req *http.Request) (int, any) {
	user := req.PathValue("user_id")
	ban, banned, err := a.r.GetBan(req.Context(), user)
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		UserID string `json:"user_id"`
		apiBan
	}{user, newAPIBan(ban, banned)}
}

func (a *api) unban(_ http.ResponseWriter, req *http.Request) (int, any) {
	user := req.PathValue("user_id")
	had, err := a.r.Unban(req.Context(), user)
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		UserID string `json:"user_id"`
		Banned bool   `json:"banned"`
		Lifted bool   `json:"lifted"`
	}{user, false, had}
}

func (a *api) blocks(_ http.ResponseWriter, req *http.Request) (int, any) {
	user := req.PathValue("user_id")
	users, err := a.r.Blocks(req.Context(), user)
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		UserID string   `json:"user_id"`
		Blocks []string `json:"blocks"`
	}{user, users}
}

func (a *api) block(w http.ResponseWriter, req *http.Request) (int, any) {
	if _, err := a.r.Block(req.Context(), req.PathValue("user_id"), req.PathValue("other")); err != nil {
		return a.fail(err)
	}
	return a.blocks(w, req)
}

func (a *api) unblock(w http.ResponseWriter, req *http.Request) (int, any) {
	if _, err := a.r.Unblock(req.Context(), req.PathValue("user_id"), req.PathValue("other")); err != nil {
		return a.fail(err)
	}
	return a.blocks(w, req)
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

// queryInt reads a non-negative integer query parameter, def when absent.
func queryInt(req *http.Request, name string, def int64) (int64, bool) {
	v := req.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n >= 0
}

func (a *api) readMailbox(_ http.ResponseWriter, req *http.Request) (int, any) {
	user, action := req.PathValue("user_id"), req.URL.Query().Get("action")
	if action == "" {
		return http.StatusBadRequest, apiError{"missing action: ?action=A"}
	}
	since, ok := queryInt(req, "since", 0)
	if !ok {
		return http.StatusBadRequest, apiError{"since must be a non-negative integer"}
	}
	limit, ok := queryInt(req, "limit", DefaultMailboxLimit)
	if !ok || limit == 0 || limit > MaxMailboxLimit {
		return http.StatusBadRequest, apiError{fmt.Sprintf("limit must be an integer from 1 to %d", MaxMailboxLimit)}
	}
	p, err := a.r.ReadMailbox(req.Context(), user, action, since, int(limit))
	if err != nil {
		return a.fail(err)
	}
	msgs := make([]json.RawMessage, len(p.Mails))
	for i, m := range p.Mails {
		msgs[i] = m.Frame
	}
	return http.StatusOK, struct {
		UserID   string            `json:"user_id"`
		Action   string            `json:"action"`
		Messages []json.RawMessage `json:"messages"`
		Seq      int64             `json:"seq"`
		Read     int64             `json:"read"`
		Gap      bool              `json:"gap"`
	}{user, action, msgs, p.Latest, p.Read, p.Gap}
}

func (a *api) eraseMailbox(_ http.ResponseWriter, req *http.Request) (int, any) {
	n, err := a.r.EraseMailbox(req.Context(), req.PathValue("user_id"), req.URL.Query().Get("action"))
	if err != nil {
		return a.fail(err)
	}
	return http.StatusOK, struct {
		Deleted int `json:"deleted"`
	}{n}
}
