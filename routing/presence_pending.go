package routing

import (
	"context"
	"errors"
)

// Leave events that could not be sent when they were owed: a binding was
// removed (its connection closed, its node reaped) while the store or the
// broker failed, so the other nodes' clients were not told. They are
// retried every heartbeat period once the store is good again, unless the
// user is back in the action by then (its join was sent meanwhile).

// maxPendingLeaves bounds the leave events kept for retrying; past it the
// oldest are dropped (and logged).
const maxPendingLeaves = 1 << 16

// pendingLeave is one leave event owed.
type pendingLeave struct {
	user, action string
	local        bool // already delivered to this node's connections
}

func (r *Router) addPendingLeave(l pendingLeave) {
	r.leavesMu.Lock()
	defer r.leavesMu.Unlock()
	if len(r.leaves) == 0 {
		r.log.Warn("leave event not sent; retrying in the background", "action", l.action)
	}
	if len(r.leaves) >= maxPendingLeaves {
		r.log.Error("too many leave events pending; dropping the oldest", "dropped", len(r.leaves)-maxPendingLeaves+1)
		r.leaves = r.leaves[len(r.leaves)-maxPendingLeaves+1:]
	}
	r.leaves = append(r.leaves, l)
}

// retryLeaves sends the leave events owed, in order. It stops at the first
// failure; the rest waits for the next tick.
func (r *Router) retryLeaves(ctx context.Context) {
	if !r.storeOK.Load() {
		return
	}
	r.leavesMu.Lock()
	leaves := r.leaves
	r.leaves = nil
	r.leavesMu.Unlock()
	if len(leaves) == 0 {
		return
	}
	done := 0
	for _, l := range leaves {
		if !r.resendLeave(ctx, l) {
			break
		}
		done++
	}
	r.leavesMu.Lock()
	r.leaves = append(leaves[done:], r.leaves...)
	left := len(r.leaves)
	r.leavesMu.Unlock()
	if left == 0 {
		r.log.Info("pending leave events sent", "events", done)
	}
}

// resendLeave sends one owed leave event; it reports false when the store
// or the broker failed again.
func (r *Router) resendLeave(ctx context.Context, l pendingLeave) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	back, err := r.store.CountUser(ctx, l.action, l.user)
	if err != nil {
		return false
	}
	if back > 0 {
		return true // the user came back: no leave any more
	}
	allowed, err := r.presenceEventsAllowed(ctx, l.action, false)
	if err != nil {
		return false
	}
	if !allowed {
		return true
	}
	e := &Envelope{Kind: KindLeave, Origin: r.node, Action: l.action, Payload: eventFrame("leave", l.user, l.action)}
	if !l.local {
		r.deliverLocal(e)
	}
	_, err = r.publish(ctx, e)
	return err == nil || errors.Is(err, errUnreachable) // only dead nodes missed it
}
