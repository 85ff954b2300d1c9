package webhook

import (
	"context"
	"errors"
	"time"
)

// OpKind says what an Op does.
type OpKind byte

// Op kinds.
const (
	// OpAdd queues the event.
	OpAdd OpKind = iota + 1
	// OpOnline queues the event, a user.online, unless a user.offline of
	// the same user and action is scheduled: that one is then cancelled
	// and the event is not queued. The check and the change are atomic.
	OpOnline
	// OpSchedule holds the event, a user.offline, until Due, then queues
	// it. It replaces a scheduled event of the same user and action.
	OpSchedule
)

// Op is one change to a Queue.
type Op struct {
	Kind  OpKind
	Event Event
	Due   time.Time // OpSchedule only
}

// Pushed is the result of one Op.
type Pushed struct {
	Queued  bool // the event is queued (false: scheduled, or an OpOnline that cancelled an offline)
	Dropped int  // oldest events dropped to stay within the limit
}

// ErrUnavailable: the queue's store cannot be reached; the operation may
// not have happened.
var ErrUnavailable = errors.New("webhook: queue unavailable")

// Queue holds the events waiting to be sent, and the user.offline events
// waiting for their delay. An event counts as emitted once a Queue method
// returned without error. MemoryQueue serves one process; RedisQueue shares
// the queue between nodes, so that any live node sends what a dead one left.
// Implementations are safe for concurrent use.
type Queue interface {
	// Push applies ops in order (with Redis, in one round trip) and
	// returns one result per op. On error, any prefix of ops may have been
	// applied: pushing them again is safe, since a retried event keeps its
	// id and receivers drop duplicates by it.
	Push(ctx context.Context, ops []Op) ([]Pushed, error)
	// Read returns up to n queued events that this node is to send and was
	// not handed yet, in queue order (events of one user and action always
	// come from one node, in the order they were queued). It first queues
	// the scheduled events that are due. It does not wait.
	Read(ctx context.Context, n int) (evs []Event, dropped int, err error)
	// Ack removes ev, which Read returned, from the queue: it was sent or
	// dropped.
	Ack(ctx context.Context, ev Event) error
	// Stats returns the number of queued events (cluster-wide with Redis)
	// and when the oldest was queued (zero when none).
	Stats(ctx context.Context) (n int, oldest time.Time, err error)
	// Release gives up this node's share of the queue, so that other nodes
	// take it over at once. Unacknowledged events stay queued.
	Release(ctx context.Context) error
}
