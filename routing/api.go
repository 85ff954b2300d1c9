package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	n, _, err := r.PublishSeq(ctx, action, to, obj)
	return n, err
}

// PublishSeq is Publish that also returns the number the message was kept
// with in the recipient's mailbox (docs/protocol.md, "The mailbox"): with the mailbox on
// and to set, the message is kept before it is delivered, and carries
// `seq`. An `id` in obj (a string of at most 64 characters or an integer)
// makes a resend within the dedup window neither kept nor delivered again:
// it returns 0 delivered and the first one's seq. seq is 0 otherwise.
func (r *Router) PublishSeq(ctx context.Context, action, to string, obj []byte) (delivered int, seq int64, err error) {
	if !ValidAction(action) {
		return 0, 0, invalidError(errActionText)
	}
	if to != "" && !ValidUserID(to) {
		return 0, 0, invalidError(errToText)
	}
	payload, err := apiMessage(action, to, obj, time.Now().UnixMilli())
	if err != nil {
		return 0, 0, err
	}
	e := &Envelope{Kind: KindMessage, Origin: r.node, Action: action, User: to, Payload: payload}
	if to != "" {
		// Through the mailbox when it is on; an `id` in obj makes a resend
		// within the dedup window neither kept nor delivered again.
		var id string
		head := payload
		if r.mbox != nil {
			if raw := member(obj, "id"); raw != nil && validID(raw) {
				id = canonicalID(raw)
			}
			head = mailHead(payload)
		}
		d := direct{e: e, id: id, head: head}
		res := r.routeDirect(ctx, nil, d)
		r.directUndelivered(nil, d, res) // Events hook
		return res.delivered, res.seq, res.err
	}
	if r.mbox != nil {
		e.Payload = dropSeq(payload)
	}
	local := r.deliverLocal(e)
	r.metrics.delivered[deliveryAPI].Add(float64(local))
	remote, err := r.publish(ctx, e)
	return local + remote, 0, err
}

// errUnreachable: the store lists recipients on nodes that could not take
// the envelope (dead, or their subscription lost); the others took it.
var errUnreachable = errors.New("recipients on unreachable nodes")

// errStoreNotReady: the store is out of reach or this node is rewriting its
// bindings; nothing was sent.
var errStoreNotReady = fmt.Errorf("%w: %w: store unavailable or rewriting bindings", ErrBrokerUnavailable, ErrNotSent)

// publish hands e to the other nodes holding its target and returns how
// many connections there took it. Connections that the store lists on
// nodes that could not take it (dead, or their subscription lost) make it
// an error wrapping ErrBrokerUnavailable: the message did not reach every
// recipient, and so does a message to a user found on no other node just
// after the store lost every node's bindings (othersRestoring). When the
// store lost this node's bindings, publish has them rewritten.
func (r *Router) publish(ctx context.Context, e *Envelope) (int, error) {
	if !r.storeOK.Load() {
		r.metrics.publishFailed.Inc()
		return 0, errStoreNotReady
	}
	d, err := r.broker.Publish(ctx, e)
	if err == nil && d.Missed > 0 {
		err = fmt.Errorf("%w: %w: %d", ErrBrokerUnavailable, errUnreachable, d.Missed)
	}
	if err == nil && e.Kind == KindMessage && e.User != "" && d.Reached == 0 && r.offlineUncertain() {
		// Not user_offline: the user's bindings may not be rewritten yet.
		err = fmt.Errorf("%w: other nodes may still be rewriting their bindings", ErrBrokerUnavailable)
	}
	if err != nil {
		r.metrics.publishFailed.Inc()
		if errors.Is(err, session.ErrBindingsLost) {
			r.bindingsLost()
		}
	}
	return d.Reached, err
}

// Presence returns the distinct user ids online in action (sorted, never
// nil) and its number of connections, cluster-wide. While this node
// rewrites its bindings (the store lost them) it fails with an error
// wrapping ErrBrokerUnavailable: the store would not list its users.
func (r *Router) Presence(ctx context.Context, action string) (users []string, conns int, err error) {
	if !ValidAction(action) {
		return nil, 0, invalidError(errActionText)
	}
	if !r.storeOK.Load() {
		return nil, 0, errStoreNotReady // the store would list none of this node's users
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
	// One envelope per action of the user: nodes subscribe to a user's
	// connections per action.
	var errs []error
	seen := make(map[string]bool)
	for _, b := range bs {
		if !seen[b.Action] {
			seen[b.Action] = true
			errs = append(errs, r.disconnectTarget(ctx, &Envelope{Kind: KindDisconnect, Origin: r.node, Action: b.Action, User: user, Payload: []byte(reason)}))
		}
	}
	return len(bs), errors.Join(errs...)
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
	// The envelope goes to the channel of the node holding the connection.
	return 1, r.disconnectTarget(ctx, &Envelope{Kind: KindDisconnect, Origin: r.node, Node: b.Node, Conn: connID, Payload: []byte(reason)})
}

// disconnectTarget closes the local connections e targets at once, then
// has the other nodes close theirs.
func (r *Router) disconnectTarget(ctx context.Context, e *Envelope) error {
	r.disconnectLocal(e)
	if e.Node == r.node {
		return nil // the connection was here
	}
	_, err := r.publish(ctx, e)
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
		return nil, invalidError("the message must be one unambiguous JSON object" + ambiguityHint(obj))
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

// Mailbox API limits.
const (
	DefaultMailboxLimit = 100
	MaxMailboxLimit     = 1000
)

// ReadMailbox returns at most limit (at most 1000; 0 means 100) of the
// messages kept for user in action with a seq above since, oldest first,
// each as it was delivered, with the mailbox's latest seq and the user's
// read cursor. Without a mailbox the error wraps ErrInvalid.
func (r *Router) ReadMailbox(ctx context.Context, user, action string, since int64, limit int) (session.Page, error) {
	switch {
	case r.mbox == nil:
		return session.Page{}, invalidError(errNoMailbox.Error())
	case !ValidUserID(user):
		return session.Page{}, invalidError(errUserText)
	case !ValidAction(action):
		return session.Page{}, invalidError(errActionText)
	case since < 0 || limit < 0:
		return session.Page{}, invalidError("since and limit must be non-negative integers")
	}
	if limit == 0 {
		limit = DefaultMailboxLimit
	}
	p, err := r.mbox.Read(ctx, user, action, since, min(limit, MaxMailboxLimit))
	if err != nil {
		r.metrics.storeErrors.Inc()
	}
	return p, err
}

// EraseMailbox deletes the messages kept for user in action, or in all
// of the user's actions when action is "", and returns how many it
// deleted. Numbers and read cursors stay: the next message continues the
// numbering. Without a mailbox the error wraps ErrInvalid.
func (r *Router) EraseMailbox(ctx context.Context, user, action string) (int, error) {
	switch {
	case r.mbox == nil:
		return 0, invalidError(errNoMailbox.Error())
	case !ValidUserID(user):
		return 0, invalidError(errUserText)
	case action != "" && !ValidAction(action):
		return 0, invalidError(errActionText)
	}
	n, err := r.mbox.Erase(ctx, user, action)
	if err != nil {
		r.metrics.storeErrors.Inc()
	}
	return n, err
}
