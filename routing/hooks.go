package routing

import "github.com/switchboard/switchboard/session"

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

// undelivered reports a direct message that reached no connection. A
// message to oneself is not reported: its user is online.
func (r *Router) undelivered(msg []byte, to, action, from string, n int, err error) {
	if r.cfg.Events != nil && err == nil && n == 0 && to != "" && to != from {
		r.cfg.Events.Undelivered(msg, to, action)
	}
}
