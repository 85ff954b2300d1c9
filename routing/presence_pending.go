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
//
// A leave that reached some nodes but not all (a node's subscription was
// being rebuilt, or the node is dead and not yet reaped) is resent a few
// times: the nodes that had it get it again, which changes nothing for
// their clients (presence events are set operations).

// maxPendingLeaves bounds the leave events kept for retrying; past it the
// oldest are dropped (and logged).
const maxPendingLeaves = 1 << 16

// missedTries is how often a leave that some nodes missed is resent: about
// as many seconds as a subscription takes to be rebuilt.
const missedTries = 6

// pendingLeave is one leave event owed.
type pendingLeave struct {
	user, action string
	local        bool // already delivered to this node's connections
	missed       bool // the last try reached some nodes, not all
	tries        int  // tries so far with missed set
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
	var again []pendingLeave // missed by some nodes once more
	for i := range leaves {
		l := &leaves[i]
		ok, missed := r.resendLeave(ctx, *l)
		if !ok {
			break
		}
		done++
		if missed {
			if l.tries++; l.tries < missedTries {
				l.local, l.missed = true, true
				again = append(again, *l)
			}
		}
	}
	r.leavesMu.Lock()
	r.leaves = append(append(again, leaves[done:]...), r.leaves...)
	left := len(r.leaves)
	r.leavesMu.Unlock()
	if left == 0 {
		r.log.Info("pending leave events sent", "events", done)
	}
}

// resendLeave sends one owed leave event; ok is false when the store or
// the broker failed again, missed when some nodes took it and others not.
func (r *Router) resendLeave(ctx context.Context, l pendingLeave) (ok, missed bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	back, err := r.store.CountUser(ctx, l.action, l.user)
	if err != nil {
		return false, false
	}
	if back > 0 {
		return true, false // the user came back: no leave any more
	}
	allowed, err := r.presenceEventsAllowed(ctx, l.action, false)
	if err != nil {
		return false, false
	}
	if !allowed {
		return true, false
	}
	e := &Envelope{Kind: KindLeave, Origin: r.node, Action: l.action, Payload: eventFrame("leave", l.user, l.action)}
	if !l.local {
		r.deliverLocal(e)
	}
	_, err = r.publish(ctx, e)
	if errors.Is(err, errUnreachable) {
		return true, true
	}
	return err == nil, false
}
