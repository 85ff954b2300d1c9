package routing

import (
	"strconv"

	"github.com/switchboard/switchboard/session"
)

// Events receives the moments the application's backend may want to hear
// about (webhook.Sender implements it). The Router calls it on its message
// and connection paths, so no method may block.
type Events interface {
	// UserOnline: b is its user's first connection in its action,
	// cluster-wide.
	UserOnline(b session.Binding)
	// UserOffline: user's last connection in action has closed (on this
	// node, or on a dead node whose bindings this node removed).
	UserOffline(user, action string)
	// Undelivered: msg, a direct message to user `to` in action (as it
	// would have been delivered), reached no connection.
	Undelivered(msg []byte, to, action string)
}

// The Router's hook calls are the only lines that use these helpers; each
// is marked "Events hook" where it is called.

// userOnline reports b when events are configured.
func (r *Router) userOnline(b session.Binding) {
	if r.cfg.Events != nil {
		r.cfg.Events.UserOnline(b)
	}
}

// userOffline reports that user's last connection in action has closed.
func (r *Router) userOffline(user, action string) {
	if r.cfg.Events != nil {
		r.cfg.Events.UserOffline(user, action)
	}
}

// usersOffline reports every removed binding that was its user's last in
// its action.
func (r *Router) usersOffline(removed []session.Removed) {
	if r.cfg.Events == nil {
		return
	}
	for _, b := range removed {
		if b.Last {
			r.userOffline(b.UserID, b.Action)
		}
	}
}

// directUndelivered reports a direct message that reached no connection:
// not a duplicate, not blocked, not to oneself, and not when the other
// nodes could not be reached (it is not known whether it did). The message
// is reported as it would have been delivered, with its seq when kept.
func (r *Router) directUndelivered(c *Conn, d direct, res directResult) {
	if r.cfg.Events == nil || res.delivered > 0 || res.err != nil || res.dup || res.blocked {
		return
	}
	if c != nil && d.e.User == c.user {
		return // to oneself: the user is online
	}
	frame := d.head // the whole frame without the mailbox
	if r.mbox != nil {
		frame = append(d.head[:len(d.head):len(d.head)], strconv.AppendInt(nil, res.seq, 10)...)
		frame = append(frame, '}')
	}
	r.cfg.Events.Undelivered(frame, d.e.User, d.e.Action)
}
