package webhook

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

var _ Queue = (*MemoryQueue)(nil)

// MemoryQueue is a Queue in process memory: a single node's, lost when the
// process stops. Safe for concurrent use.
type MemoryQueue struct {
	limit int

	mu      sync.Mutex
	unread  []Event              // queued, not handed to Read yet, oldest first
	queued  map[string]time.Time // event id → when queued, for everything not acked
	delayed map[string]delayed   // ordering key → scheduled user.offline
	due     dueHeap              // the same, soonest first; cancelled or replaced entries are skipped when popped
}

type delayed struct {
	ev  Event
	due time.Time
}

// dueHeap orders scheduled events by due time (container/heap).
type dueHeap []delayed

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(delayed)) } //nolint:forcetypeassert // only delayed is pushed
func (h *dueHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = delayed{}
	*h = old[:len(old)-1]
	return d
}

// DefaultQueueLimit is the default number of events a queue holds.
const DefaultQueueLimit = 100000

// NewMemoryQueue returns an empty MemoryQueue holding at most limit events
// (default DefaultQueueLimit when limit <= 0); beyond it the oldest not yet
// handed out are dropped.
func NewMemoryQueue(limit int) *MemoryQueue {
	if limit <= 0 {
		limit = DefaultQueueLimit
	}
	return &MemoryQueue{limit: limit, queued: make(map[string]time.Time), delayed: make(map[string]delayed)}
}

// Push implements Queue.
func (q *MemoryQueue) Push(_ context.Context, ops []Op) ([]Pushed, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	res := make([]Pushed, len(ops))
	for i, o := range ops {
		switch o.Kind {
		case OpSchedule:
			d := delayed{o.Event, o.Due}
			q.delayed[o.Event.key()] = d
			heap.Push(&q.due, d)
		case OpOnline:
			if _, ok := q.delayed[o.Event.key()]; ok {
				delete(q.delayed, o.Event.key())
				continue
			}
			fallthrough
		default:
			res[i] = Pushed{Queued: true, Dropped: q.add(o.Event, now)}
		}
	}
	return res, nil
}

// add queues ev; q.mu is held.
func (q *MemoryQueue) add(ev Event, now time.Time) int {
	dropped := 0
	for len(q.queued) >= q.limit && len(q.unread) > 0 {
		delete(q.queued, q.unread[0].ID)
		q.unread[0] = Event{}
		q.unread = q.unread[1:]
		dropped++
	}
	ev.ref = ev.ID
	q.unread = append(q.unread, ev)
	q.queued[ev.ID] = now
	return dropped
}

// Read implements Queue.
func (q *MemoryQueue) Read(_ context.Context, n int) ([]Event, int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	dropped := 0
	for len(q.due) > 0 && !q.due[0].due.After(now) {
		d := heap.Pop(&q.due).(delayed) //nolint:forcetypeassert // only delayed is pushed
		k := d.ev.key()
		if cur, ok := q.delayed[k]; !ok || cur.ev.ID != d.ev.ID {
			continue // cancelled by a return, or replaced
		}
		delete(q.delayed, k)
		dropped += q.add(d.ev, now)
	}
	n = min(n, len(q.unread))
	if n <= 0 {
		return nil, dropped, nil
	}
	evs := make([]Event, n)
	copy(evs, q.unread)
	clear(q.unread[:n])
	q.unread = q.unread[n:]
	if len(q.unread) == 0 {
		q.unread = nil // let the backing array go
	}
	return evs, dropped, nil
}

// Ack implements Queue.
func (q *MemoryQueue) Ack(_ context.Context, ev Event) error {
	q.mu.Lock()
	delete(q.queued, ev.ref)
	q.mu.Unlock()
	return nil
}

// Stats implements Queue.
func (q *MemoryQueue) Stats(context.Context) (int, time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Time
	for _, t := range q.queued { // at most limit entries, read every few seconds
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return len(q.queued), oldest, nil
}

// Release implements Queue; a MemoryQueue has no share to give up.
func (q *MemoryQueue) Release(context.Context) error { return nil }
