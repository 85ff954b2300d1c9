package routing

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
)

// ErrBrokerUnavailable: a message could not be routed to other nodes.
var ErrBrokerUnavailable = errors.New("routing: broker unavailable")

// ErrNotSent: the broker did not send the envelope at all (it knew Redis
// to be unreachable, or its queue stayed full), so it reached nobody.
// Errors wrapping it wrap ErrBrokerUnavailable too.
var ErrNotSent = errors.New("routing: not sent")

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
	Seq     int64  // the message's number in its recipient's mailbox (0: none)
	// Hist is the envelope's entry in its target's history on Redis
	// (zero: none). A message or presence event carries it in the Conn
	// field on the wire, in Redis's "ms-seq" form: nodes of versions
	// before the history ignore that field in such envelopes, so they
	// still read them during a rolling upgrade.
	Hist    HistID
	Payload []byte // the frame to write to each recipient
}

// HistID is the id of an entry in a target's history: a Redis stream id,
// ms-seq. Ids grow with each entry of one history.
type HistID struct{ Ms, Seq uint64 }

// IsZero reports whether h is no id.
func (h HistID) IsZero() bool { return h == HistID{} }

// Less reports whether h comes before o.
func (h HistID) Less(o HistID) bool { return h.Ms < o.Ms || h.Ms == o.Ms && h.Seq < o.Seq }

// String returns h in Redis's form.
func (h HistID) String() string {
	return strconv.FormatUint(h.Ms, 10) + "-" + strconv.FormatUint(h.Seq, 10)
}

// parseHistID parses an id in Redis's form, "ms-seq".
func parseHistID(b string) (HistID, bool) {
	var h HistID
	i := 0
	for ; i < len(b) && b[i] != '-'; i++ {
	}
	if i == 0 || i >= len(b)-1 {
		return h, false
	}
	var ok bool
	if h.Ms, ok = parseUint(b[:i]); !ok {
		return h, false
	}
	h.Seq, ok = parseUint(b[i+1:])
	return h, ok
}

// parseUint parses a decimal of at most 19 digits, without allocating.
func parseUint[T string | []byte](b T) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for i := range len(b) {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
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

// DirectMessage is a direct message for DirectPublisher.PublishDirect.
type DirectMessage struct {
	// Envelope targets the recipient (Action, User) and has no Payload:
	// the publisher builds it from Head (and the seq it assigns).
	Envelope *Envelope
	Sender   string // the sender's user id ("" for the server API)
	ID       string // the sender's canonical id for the message ("" = none)
	// Head is the frame without its final '}' followed by `,"seq":` with a
	// mailbox, the whole frame without one.
	Head []byte
	// ToSelf: the sending connection is one of the recipient's.
	ToSelf bool
}

// DirectDelivery is what a direct message achieved.
type DirectDelivery struct {
	Delivery       // connections that took it, every node included
	Seq      int64 // its number in the recipient's mailbox (0: no mailbox)
	Dup      bool  // a resend within the dedup window: not delivered again
	Blocked  bool  // the recipient blocks the sender: dropped
}

// DirectPublisher is a Broker that routes a direct message whole, in one
// round trip: the recipient's blocks, its mailbox (dedup, keep, number)
// and delivery to every node holding the recipient's connections, the
// sending node included (through its own subscription, so that every
// connection gets a mailbox's messages in seq order).
type DirectPublisher interface {
	PublishDirect(ctx context.Context, m *DirectMessage) (DirectDelivery, error)
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

// Resubscriber is a Broker whose subscriptions can lose envelopes in
// flight when they break: Redis discards what it had queued for a
// subscriber whose connection dropped, after PUBLISH counted it, and what
// is published while a node is not subscribed reaches nobody there.
// OnResubscribed sets a function that Run calls each time a topic that was
// subscribed before is subscribed again, before any envelope of the new
// subscription is delivered (the Router then replays the kept messages the
// topic's connections may have lost: mailbox.go, repair). Call it before
// Run.
type Resubscriber interface {
	OnResubscribed(func(Topic))
}

// MarshalBinary encodes e for the wire between nodes.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	b := e.AppendHeader(make([]byte, 0, e.headerSize()+21+len(e.Payload)))
	var seq []byte
	if e.Seq > 0 {
		seq = strconv.AppendInt(make([]byte, 0, 20), e.Seq, 10)
	}
	b = append(b, byte(len(seq)))
	b = append(b, seq...)
	return append(b, e.Payload...), nil
}

func (e *Envelope) headerSize() int {
	return 1 + 6*binary.MaxVarintLen32 + len(e.Origin) + len(e.Exclude) + len(e.Action) + len(e.User) + len(e.Conn) + len(e.Node)
}

// AppendHeader appends e's wire form up to its seq field, which a Redis
// script completes with the seq field (a length byte and the decimal
// number, or a zero byte) and the payload.
func (e *Envelope) AppendHeader(b []byte) []byte {
	b = append(b, e.Kind)
	conn := e.Conn
	if conn == "" && !e.Hist.IsZero() && e.carriesHist() {
		conn = e.Hist.String()
	}
	for _, s := range [...]string{e.Origin, e.Exclude, e.Action, e.User, conn, e.Node} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadEnvelope = errors.New("routing: malformed envelope")

// carriesHist reports whether e's kind carries its history id in the Conn
// field: messages and presence events, which never target a connection.
func (e *Envelope) carriesHist() bool {
	return e.Kind == KindMessage || e.Kind == KindJoin || e.Kind == KindLeave
}

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
	if len(b) < 1 || len(b)-1 < int(b[0]) {
		return errBadEnvelope
	}
	e.Seq, e.Hist = 0, HistID{}
	if n := int(b[0]); n > 0 {
		seq, ok := parseUint(b[1 : 1+n])
		if !ok || seq == 0 || seq > 1<<63-1 {
			return errBadEnvelope
		}
		e.Seq = int64(seq)
	}
	if e.Conn != "" && e.carriesHist() {
		h, ok := parseHistID(e.Conn)
		if !ok {
			return errBadEnvelope
		}
		e.Hist, e.Conn = h, ""
	}
	e.Payload = b[1+int(b[0]):]
	return nil
}
