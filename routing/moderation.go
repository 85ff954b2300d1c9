package routing

// Bans and blocks (docs/operations.md, "Protecting a public deployment"): Router methods behind the server API
// and the client requests block, unblock and blocks.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/session"
)

// KindBan disconnects the target's connections with status "banned".
const KindBan byte = 'b'

// maxBan is the longest ban the API accepts (about 100 years).
const maxBan = 100 * 365 * 24 * time.Hour

// Ban bans user for d (the reason is shown to their connections and kept):
// every connection of the user, on every node, gets
// `{"type":"status","status":"banned","reason":…}` and close 1008, and
// `online` is refused with `banned` until the ban expires. It returns when
// the ban ends and how many connections the store held for the user.
func (r *Router) Ban(ctx context.Context, user string, d time.Duration, reason string) (time.Time, int, error) {
	if !ValidUserID(user) {
		return time.Time{}, 0, invalidError(errUserText)
	}
	if d <= 0 || d > maxBan {
		return time.Time{}, 0, invalidError("duration must be a positive Go duration such as \"1h\" or \"720h\", at most 100 years")
	}
	if reason == "" {
		reason = "banned by the server"
	}
	reason, err := disconnectReason(reason)
	if err != nil {
		return time.Time{}, 0, err
	}
	until := time.Now().Add(d).Truncate(time.Millisecond)
	if err := r.store.SetBan(ctx, user, session.Ban{Until: until, Reason: reason}); err != nil {
		r.metrics.storeErrors.Inc()
		return time.Time{}, 0, err
	}
	bs, err := r.store.UserBindings(ctx, user)
	if err != nil {
		r.metrics.storeErrors.Inc()
		return until, 0, err
	}
	var errs []error
	seen := make(map[string]bool)
	for _, b := range bs {
		if !seen[b.Action] {
			seen[b.Action] = true
			errs = append(errs, r.disconnectTarget(ctx, &Envelope{Kind: KindBan, Origin: r.node, Action: b.Action, User: user, Payload: []byte(reason)}))
		}
	}
	return until, len(bs), errors.Join(errs...)
}

// GetBan returns user's ban, if any.
func (r *Router) GetBan(ctx context.Context, user string) (session.Ban, bool, error) {
	if !ValidUserID(user) {
		return session.Ban{}, false, invalidError(errUserText)
	}
	return r.store.GetBan(ctx, user)
}

// Unban lifts user's ban and reports whether there was one.
func (r *Router) Unban(ctx context.Context, user string) (bool, error) {
	if !ValidUserID(user) {
		return false, invalidError(errUserText)
	}
	return r.store.DeleteBan(ctx, user)
}

// Block makes user block other: other's direct messages to user are
// neither delivered nor kept, in every action, and their sender's ack
// looks like one for an offline recipient. It reports whether the block
// is new.
func (r *Router) Block(ctx context.Context, user, other string) (bool, error) {
	if !ValidUserID(user) || !ValidUserID(other) {
		return false, invalidError(errUserText)
	}
	if user == other {
		return false, invalidError("a user cannot block themselves")
	}
	ok, err := r.store.Block(ctx, user, other)
	if errors.Is(err, session.ErrTooManyBlocks) {
		return false, invalidError(fmt.Sprintf("a user can block at most %d users", session.MaxBlocks))
	}
	return ok, err
}

// Unblock lifts user's block of other and reports whether there was one.
func (r *Router) Unblock(ctx context.Context, user, other string) (bool, error) {
	if !ValidUserID(user) || !ValidUserID(other) {
		return false, invalidError(errUserText)
	}
	return r.store.Unblock(ctx, user, other)
}

// Blocks returns the users user blocks, sorted.
func (r *Router) Blocks(ctx context.Context, user string) ([]string, error) {
	if !ValidUserID(user) {
		return nil, invalidError(errUserText)
	}
	return r.store.Blocks(ctx, user)
}

// blocked reports whether recipient blocks sender, for the routing paths
// that check it themselves (the in-memory store; the Redis direct route
// checks in its script). A store error counts as not blocked: the message
// is not lost for it.
func (r *Router) blocked(ctx context.Context, recipient, sender string) bool {
	if sender == "" || recipient == sender {
		return false
	}
	ok, err := r.store.Blocked(ctx, recipient, sender)
	if err != nil {
		r.metrics.storeErrors.Inc()
	}
	return ok
}

// ban closes c for a ban: a status message, then 1008.
func (r *Router) ban(c *Conn, reason string) {
	frame := []byte(`{"type":"status","status":"banned","reason":`)
	frame = appendJSONString(frame, reason)
	frame = append(frame, '}')
	c.setReason(CodeBanned)
	c.close(websocket.ClosePolicyViolation, reason, frame)
}

// blockRequest handles {"type":"block"|"unblock","user_id":…}: the answer
// is the user's blocks, as for {"type":"blocks"}.
func (r *Router) blockRequest(c *Conn, typ string, b, id []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout) //nolint:contextcheck // melody gives no request context
	defer cancel()
	if typ != "blocks" {
		var msg struct {
			UserID string `json:"user_id"`
		}
		if json.Unmarshal(b, &msg) != nil || !ValidUserID(msg.UserID) || msg.UserID == c.user {
			r.sendError(c, CodeInvalidUser, id, nil)
			return
		}
		var err error
		if typ == "block" {
			_, err = r.Block(ctx, c.user, msg.UserID)
		} else {
			_, err = r.Unblock(ctx, c.user, msg.UserID)
		}
		var inv invalidError
		switch {
		case errors.As(err, &inv):
			r.sendError(c, CodeInvalidUser, id, nil)
			return
		case err != nil:
			r.metrics.storeErrors.Inc()
			r.sendError(c, CodeUnavailable, id, nil)
			return
		}
	}
	users, err := r.store.Blocks(ctx, c.user)
	if err != nil {
		r.metrics.storeErrors.Inc()
		r.sendError(c, CodeUnavailable, id, nil)
		return
	}
	out := []byte(`{"type":"blocks","users":`)
	u, _ := json.Marshal(users) // []string always marshals
	out = append(out, u...)
	c.write(withID(out, id))
}
