package webhook

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Queue = (*RedisQueue)(nil)

var (
	//go:embed lua/add.lua
	addLua string
	//go:embed lua/online.lua
	onlineLua string
	//go:embed lua/schedule.lua
	scheduleLua string
	//go:embed lua/promote.lua
	promoteLua string
	//go:embed lua/lease.lua
	leaseLua string
	//go:embed lua/release.lua
	releaseLua string

	addScript      = redis.NewScript(addLua)
	onlineScript   = redis.NewScript(onlineLua)
	scheduleScript = redis.NewScript(scheduleLua)
	promoteScript  = redis.NewScript(promoteLua)
	leaseScript    = redis.NewScript(leaseLua)
	releaseScript  = redis.NewScript(releaseLua)
)

// RedisQueueConfig configures a RedisQueue. The zero value of every field
// but Node means its documented default.
type RedisQueueConfig struct {
	// Node is this node's id. Required.
	Node string
	// Prefix starts every key. Default "sb:".
	Prefix string
	// Limit is the number of events queued cluster-wide; beyond it the
	// oldest are dropped. Default DefaultQueueLimit.
	Limit int
	// Partitions splits the queue; each is sent by one node at a time.
	// Every node must use the same number. Default 8.
	Partitions int
	// LeaseTTL is how long a node keeps a partition without renewing it:
	// a dead node's partitions are taken over after it. Default 15s.
	LeaseTTL time.Duration
}

// partKeys are the keys of one partition, all in one hash slot.
type partKeys struct {
	events  string // stream: queued events, fields id, key, at, body
	delayed string // zset: ordering key → due time (Unix ms) of its user.offline
	offline string // hash: ordering key → "id at body" of its user.offline
	lease   string // string with TTL: the node sending this partition
}

// RedisQueue is a Queue in Redis, shared by every node. Events are split
// into partitions by user and action; each partition is a stream read by
// the one node holding its lease, so one user's events go out in order
// from one node at a time. An event stays in its stream until
// acknowledged: when a node dies, the node that takes its lease over reads
// the stream from the start and sends what was left. Safe for concurrent
// use.
type RedisQueue struct {
	c      redis.UniversalClient
	cfg    RedisQueueConfig
	parts  []partKeys
	maxLen int // per partition

	readMu  sync.Mutex // Read's state
	owned   []bool
	last    []string // XRANGE start of each owned partition
	renewAt time.Time

	handedMu sync.Mutex
	handed   map[string]struct{} // partition/stream id of each event handed out and not acked
}

// NewRedisQueue returns a RedisQueue on c. It does no I/O.
func NewRedisQueue(c redis.UniversalClient, cfg RedisQueueConfig) (*RedisQueue, error) {
	if cfg.Node == "" {
		return nil, errors.New("webhook: RedisQueueConfig.Node is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sb:"
	}
	if cfg.Limit <= 0 {
		cfg.Limit = DefaultQueueLimit
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 8
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	q := &RedisQueue{
		c: c, cfg: cfg,
		maxLen: (cfg.Limit + cfg.Partitions - 1) / cfg.Partitions,
		owned:  make([]bool, cfg.Partitions),
		last:   make([]string, cfg.Partitions),
		handed: make(map[string]struct{}),
	}
	for i := range cfg.Partitions {
		tag := "{" + cfg.Prefix + "webhooks:" + strconv.Itoa(i) + "}"
		q.parts = append(q.parts, partKeys{tag + ":events", tag + ":delayed", tag + ":offline", tag + ":lease"})
	}
	return q, nil
}

// Keys returns the keys of partition i (for tests and operators).
func (q *RedisQueue) Keys(i int) (events, delayed, offline, lease string) {
	p := q.parts[i]
	return p.events, p.delayed, p.offline, p.lease
}

func (q *RedisQueue) partOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key)) // never fails
	return int(h.Sum32() % uint32(len(q.parts)))
}

func unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Push implements Queue: one pipeline of scripts, each on one partition.
func (q *RedisQueue) Push(ctx context.Context, ops []Op) ([]Pushed, error) {
	pipe := q.c.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	for i, o := range ops {
		ev := o.Event
		k := ev.key()
		p := q.parts[q.partOf(k)]
		switch o.Kind {
		case OpSchedule:
			payload := ev.ID + " " + strconv.FormatInt(ev.At.UnixMilli(), 10) + " " + string(ev.Body)
			cmds[i] = scheduleScript.Eval(ctx, pipe, []string{p.delayed, p.offline}, k, o.Due.UnixMilli(), payload)
		case OpOnline:
			cmds[i] = onlineScript.Eval(ctx, pipe, []string{p.delayed, p.offline, p.events},
				k, q.maxLen, ev.ID, ev.At.UnixMilli(), ev.Body)
		default:
			cmds[i] = addScript.Eval(ctx, pipe, []string{p.events}, q.maxLen, ev.ID, k, ev.At.UnixMilli(), ev.Body)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable(err)
	}
	res := make([]Pushed, len(ops))
	for i, o := range ops {
		n, _ := cmds[i].Int() // Exec reported no error
		switch {
		case o.Kind == OpSchedule:
		case n < 0: // an OpOnline that cancelled
		default:
			res[i] = Pushed{Queued: true, Dropped: n}
		}
	}
	return res, nil
}

// Read implements Queue. Every LeaseTTL/3 it takes or renews the leases of
// the partitions no live node holds; it reads only the partitions it holds.
func (q *RedisQueue) Read(ctx context.Context, n int) ([]Event, int, error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	now := time.Now()
	if !now.Before(q.renewAt) {
		if err := q.renew(ctx); err != nil {
			return nil, 0, err
		}
		q.renewAt = now.Add(q.cfg.LeaseTTL / 3)
	}
	var owned []int
	for i, o := range q.owned {
		if o {
			owned = append(owned, i)
		}
	}
	if len(owned) == 0 || n <= 0 {
		return nil, 0, nil
	}
	per := n/len(owned) + 1
	pipe := q.c.Pipeline()
	promoted := make([]*redis.Cmd, len(owned))
	ranges := make([]*redis.XMessageSliceCmd, len(owned))
	for j, i := range owned {
		p := q.parts[i]
		promoted[j] = promoteScript.Eval(ctx, pipe, []string{p.delayed, p.offline, p.events},
			now.UnixMilli(), q.maxLen, per)
		ranges[j] = pipe.XRangeN(ctx, p.events, q.last[i], "+", int64(per))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, unavailable(err)
	}
	dropped := 0
	var evs []Event
	q.handedMu.Lock()
	defer q.handedMu.Unlock()
	for j, i := range owned {
		d, _ := promoted[j].Int() // Exec reported no error
		dropped += d
		for _, m := range ranges[j].Val() {
			q.last[i] = "(" + m.ID
			h := handedKey(i, m.ID)
			if _, ok := q.handed[h]; ok {
				continue
			}
			ev, ok := parseEntry(m)
			if !ok {
				q.c.XDel(ctx, q.parts[i].events, m.ID) // unreadable: nothing to send
				continue
			}
			ev.ref, ev.part = m.ID, i
			q.handed[h] = struct{}{}
			evs = append(evs, ev)
		}
	}
	return evs, dropped, nil
}

// renew takes or renews every partition's lease that is free or ours.
func (q *RedisQueue) renew(ctx context.Context) error {
	pipe := q.c.Pipeline()
	cmds := make([]*redis.Cmd, len(q.parts))
	for i, p := range q.parts {
		cmds[i] = leaseScript.Eval(ctx, pipe, []string{p.lease}, q.cfg.Node, q.cfg.LeaseTTL.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return unavailable(err)
	}
	for i, c := range cmds {
		held := c.Val() == int64(1)
		if held && !q.owned[i] {
			q.last[i] = "-" // taken over: whatever is in the stream is unacknowledged
		}
		q.owned[i] = held
	}
	return nil
}

// handedKey names stream entry id of partition i (ids repeat across streams).
func handedKey(i int, id string) string { return strconv.Itoa(i) + "/" + id }

// parseEntry decodes a stream entry written by the scripts.
func parseEntry(m redis.XMessage) (Event, bool) {
	id, _ := m.Values["id"].(string)
	key, _ := m.Values["key"].(string)
	at, _ := m.Values["at"].(string)
	body, _ := m.Values["body"].(string)
	ms, err := strconv.ParseInt(at, 10, 64)
	if id == "" || body == "" || err != nil {
		return Event{}, false
	}
	user, action := splitKey(key)
	return Event{ID: id, Type: typeOf(body), User: user, Action: action, At: time.UnixMilli(ms), Body: []byte(body)}, true
}

// typeOf reads the type out of a body that starts {"type":"…".
func typeOf(body string) string {
	rest, ok := strings.CutPrefix(body, `{"type":"`)
	if !ok {
		return ""
	}
	t, _, _ := strings.Cut(rest, `"`)
	return t
}

// Ack implements Queue.
func (q *RedisQueue) Ack(ctx context.Context, ev Event) error {
	err := q.c.XDel(ctx, q.parts[ev.part].events, ev.ref).Err()
	q.handedMu.Lock()
	delete(q.handed, handedKey(ev.part, ev.ref))
	q.handedMu.Unlock()
	return unavailable(err)
}

// Stats implements Queue: the length and oldest entry of every partition.
func (q *RedisQueue) Stats(ctx context.Context) (int, time.Time, error) {
	pipe := q.c.Pipeline()
	lens := make([]*redis.IntCmd, len(q.parts))
	firsts := make([]*redis.XMessageSliceCmd, len(q.parts))
	for i, p := range q.parts {
		lens[i] = pipe.XLen(ctx, p.events)
		firsts[i] = pipe.XRangeN(ctx, p.events, "-", "+", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, time.Time{}, unavailable(err)
	}
	n := 0
	var oldest time.Time
	for i := range q.parts {
		n += int(lens[i].Val())
		for _, m := range firsts[i].Val() {
			ms, _, _ := strings.Cut(m.ID, "-")
			if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
				if t := time.UnixMilli(v); oldest.IsZero() || t.Before(oldest) {
					oldest = t
				}
			}
		}
	}
	return n, oldest, nil
}

// Release implements Queue: it gives up the leases this node holds.
func (q *RedisQueue) Release(ctx context.Context) error {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	pipe := q.c.Pipeline()
	for i, p := range q.parts {
		if q.owned[i] {
			releaseScript.Eval(ctx, pipe, []string{p.lease}, q.cfg.Node)
			q.owned[i] = false
		}
	}
	_, err := pipe.Exec(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	return unavailable(err)
}
