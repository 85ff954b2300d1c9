package routing

import (
	"context"
	"encoding/binary"
	"errors"
)

// ErrBrokerUnavailable: a message could not be routed to other nodes.
var ErrBrokerUnavailable = errors.New("routing: broker unavailable")

// Envelope kinds.
const (
	KindMessage    byte = 'm' // a stamped message for an action or a user in it
	KindJoin       byte = 'j' // join event for an action
	KindLeave      byte = 'l' // leave event for an action
	KindDisconnect byte = 'd' // disconnect the target's connections (server API)
	KindProbe      byte = 'p' // a node's probe of its own subscription
)

// Envelope is what one node hands to the others.
type Envelope struct {
	Kind    byte
	Origin  string // node id of the sender; nodes ignore their own envelopes
	Exclude string // connection id that must not receive it ("" = none)
	Action  string // target action ("" with Conn set: one connection)
	User    string // target user in Action; "" = the whole action
	Conn    string // target connection (KindDisconnect only)
	Payload []byte // the frame to write to each recipient

	// SelfCounted: the store's count of the target includes the sending
	// connection, which is never a recipient.
	SelfCounted bool
}

// Topic names what a node subscribes to: an action, a user (in any action),
// or a node's control channel.
type Topic struct {
	Kind byte // TopicAction, TopicUser or TopicNode
	Name string
}

// Topic kinds.
const (
	TopicAction byte = 'a'
	TopicUser   byte = 'u'
	TopicNode   byte = 'n'
)

// Topic returns where e must be published.
func (e *Envelope) Topic() Topic {
	switch {
	case e.Kind == KindDisconnect && e.Conn != "":
		return Topic{TopicNode, e.Origin}
	case e.User != "":
		return Topic{TopicUser, e.User}
	default:
		return Topic{TopicAction, e.Action}
	}
}

// Broker carries envelopes between nodes. Implementations are safe for
// concurrent use.
type Broker interface {
	// Publish hands e to every other node subscribed to its topic, without
	// blocking the caller on I/O and keeping the order of calls. done is
	// called exactly once, possibly on another goroutine, with the number of
	// connections cluster-wide that the target holds (local included, as
	// counted by local for this node), or an error wrapping
	// ErrBrokerUnavailable.
	Publish(e *Envelope, local int, done func(delivered int, err error))
	// Subscribe adds a reference to t and returns once envelopes for t
	// reach this node, or with an error wrapping ErrBrokerUnavailable when
	// ctx ends first (the reference is then dropped). Unsubscribe drops a
	// reference without blocking.
	Subscribe(ctx context.Context, t Topic) error
	Unsubscribe(t Topic)
	// Run delivers envelopes from other nodes to deliver (one at a time, in
	// order; deliver returns how many local connections it reached) until
	// ctx ends. resubscribed is called each time the broker has
	// (re)established its subscriptions after a loss of connection, so that
	// the node rewrites its bindings.
	Run(ctx context.Context, deliver func(*Envelope) int, resubscribed func()) error
	// Healthy reports whether envelopes can currently be routed.
	Healthy() bool
}

// MarshalBinary encodes e for the wire between nodes.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	n := 1 + 1 + 5*binary.MaxVarintLen32 + len(e.Origin) + len(e.Exclude) + len(e.Action) + len(e.User) + len(e.Conn) + len(e.Payload)
	b := make([]byte, 0, n)
	b = append(b, e.Kind)
	if e.SelfCounted {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, s := range [...]string{e.Origin, e.Exclude, e.Action, e.User, e.Conn} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, e.Payload...), nil
}

var errBadEnvelope = errors.New("routing: malformed envelope")

// UnmarshalBinary decodes an envelope encoded by MarshalBinary. Payload
// aliases b.
func (e *Envelope) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return errBadEnvelope
	}
	e.Kind, e.SelfCounted = b[0], b[1] == 1
	b = b[2:]
	for _, p := range [...]*string{&e.Origin, &e.Exclude, &e.Action, &e.User, &e.Conn} {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return errBadEnvelope
		}
		*p = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	e.Payload = b
	return nil
}
