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
	Node    string // target node (KindDisconnect of one connection, KindProbe)
	Payload []byte // the frame to write to each recipient
}

// Topic is what a node subscribes to, to receive envelopes: the
// connections of a user in an action, those of an action, or the node's
// own channel. Envelope.Topic says where an envelope goes.
type Topic struct {
	Action string
	User   string // with Action: that user's connections in it
	Node   string // alone: the node's own channel
}

// Topic returns the topic e is published on.
func (e *Envelope) Topic() Topic {
	if e.Node != "" {
		return Topic{Node: e.Node}
	}
	return Topic{Action: e.Action, User: e.User}
}

// Delivery is what a publish achieved on the other nodes.
type Delivery struct {
	// Reached counts the target's connections on other nodes that took the
	// envelope.
	Reached int
	// Missed counts the target's connections on other nodes that the store
	// still lists but that could not take it (a node that died and is not
	// yet reaped, or whose subscription was lost).
	Missed int
}

// Broker carries envelopes between nodes. Implementations are safe for
// concurrent use.
//
// Publish returns once the envelope has been handed to the nodes that
// hold its target (or failed), so its caller holds the result: the
// connection counts for an ack. Calls from one goroutine reach every node
// in the order they were made.
type Broker interface {
	// Publish hands e to every other node holding connections of its
	// topic. The error wraps ErrBrokerUnavailable when the envelope may not
	// have reached them (and session.ErrBindingsLost when the store lost
	// this node's bindings).
	Publish(ctx context.Context, e *Envelope) (Delivery, error)
	// Subscribe adds a reference to t and returns once envelopes for t
	// reach this node, or with an error wrapping ErrBrokerUnavailable when
	// ctx ends first (the reference is then dropped). Unsubscribe drops a
	// reference without blocking.
	Subscribe(ctx context.Context, t Topic) error
	Unsubscribe(t Topic)
	// Run delivers envelopes from other nodes to deliver (one at a time per
	// topic, in order; deliver returns how many local connections it
	// reached) until ctx ends.
	Run(ctx context.Context, deliver func(*Envelope) int) error
	// Healthy reports whether envelopes can currently be routed.
	Healthy() bool
}

// MarshalBinary encodes e for the wire between nodes.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	fields := [...]string{e.Origin, e.Exclude, e.Action, e.User, e.Conn, e.Node}
	n := 1 + len(fields)*binary.MaxVarintLen32 + len(e.Payload)
	for _, s := range fields {
		n += len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, e.Kind)
	for _, s := range fields {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, e.Payload...), nil
}

var errBadEnvelope = errors.New("routing: malformed envelope")

// UnmarshalBinary decodes an envelope encoded by MarshalBinary. Payload
// aliases b.
func (e *Envelope) UnmarshalBinary(b []byte) error {
	if len(b) < 1 {
		return errBadEnvelope
	}
	e.Kind = b[0]
	b = b[1:]
	for _, p := range [...]*string{&e.Origin, &e.Exclude, &e.Action, &e.User, &e.Conn, &e.Node} {
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
