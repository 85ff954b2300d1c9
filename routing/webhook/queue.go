package webhook

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable: the queue's store cannot be reached; the operation may
// not have happened.
var ErrUnavailable = errors.New("webhook: queue unavailable")

// Queue holds the events waiting to be sent, and the user.offline events
// waiting for their delay. An event counts as emitted once a Queue method
// returned without error. MemoryQueue serves one process; RedisQueue shares
// the queue between nodes, so that any live node sends what a dead one left.
// Implementations are safe for concurrent use.
type Queue interface {
	// Add queues ev. It returns how many of the oldest queued events were
	// dropped to stay within the limit.
	Add(ctx context.Context, ev Event) (dropped int, err error)
	// Online queues ev, a user.online, unless a user.offline of the same
	// user and action is scheduled: that one is then cancelled and ev is
	// not queued (queued false). The check and the change are atomic.
	Online(ctx context.Context, ev Event) (queued bool, dropped int, err error)
	// Schedule holds ev, a user.offline, until due, then queues it. It
	// replaces a scheduled event of the same user and action.
	Schedule(ctx context.Context, ev Event, due time.Time) error
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
