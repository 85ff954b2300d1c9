package routing

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Broker = (*RedisBroker)(nil)

// RedisBrokerConfig configures a RedisBroker. Zero values mean the defaults.
type RedisBrokerConfig struct {
	// Node is this node's id. Required.
	Node string
	// Prefix of Redis keys and channels. Default "sb:". It must match the
	// session store's prefix: the broker counts recipients in its hashes.
	Prefix string
	// QueueSize is the number of publishes waiting for Redis. When it is
	// full, Publish waits up to Timeout for room (back-pressure on the
	// sending client), then fails with ErrBrokerUnavailable. Default 16384.
	QueueSize int
	// BatchSize is the largest pipeline sent at once. Default 512.
	BatchSize int
	// Timeout bounds one pipeline. Default 2s.
	Timeout time.Duration
	// ProbeInterval is how often the node publishes a probe to itself to
	// check that its subscription still delivers. Default 2s.
	ProbeInterval time.Duration
	// Logger receives state changes (never per message). Default: discard.
	Logger *slog.Logger
}

// RedisBroker routes envelopes between nodes over Redis pub/sub. Each
// publish is one pipelined EVALSHA that counts the target's connections in
// the store's hashes and publishes only when some are on other nodes: one
// round trip, no echo to a lonely node. Channels are `{prefix}ch:a:{action}`,
// `{prefix}ch:u:{user}` and `{prefix}ch:n:{node}`; a node subscribes only to
// the actions and users of its connections, and to its own channel. Publishes
// go out from one goroutine in call order, so per-sender order holds.
//
// On a Redis Cluster the same scripts run (one key each) and PUBLISH is
// propagated to every shard by the cluster bus.
type RedisBroker struct {
	client redis.UniversalClient
	cfg    RedisBrokerConfig
	log    *slog.Logger
	queue  chan pubReq

	healthy   atomic.Bool
	lastProbe atomic.Int64 // unix nanos of the last probe received
	failing   atomic.Bool  // publishing failed; cleared by a successful pipeline

	mu      sync.Mutex
	subs    map[string]*subscription // channel → subscription wanted by the node
	live    map[string]bool          // channels Redis confirmed on the current connection
	changed chan struct{}            // wakes the subscription manager
}

type subscription struct {
	refs      int
	ready     chan struct{}
	confirmed bool
}

type pubReq struct {
	e     *Envelope
	local int
	done  func(int, error)
}

// publishScript counts the target's connections in KEYS[1] (the action's
// hash, or the user's hash when ARGV[4] names the action to count) and
// publishes ARGV[2] on channel ARGV[1] when there are more than ARGV[3]
// (the local recipients plus the sender). One script for both targets: a
// batch after a Redis restart then fails NOSCRIPT as a whole and is resent
// whole, in order.
var publishScript = redis.NewScript(`
local n = 0
if ARGV[4] then
  for _, a in ipairs(redis.call('HVALS', KEYS[1])) do
    if a == ARGV[4] then n = n + 1 end
  end
else
  n = redis.call('HLEN', KEYS[1])
end
if n > tonumber(ARGV[3]) then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n`)

// NewRedisBroker returns a broker on client. It does no I/O; call Run.
func NewRedisBroker(client redis.UniversalClient, cfg RedisBrokerConfig) *RedisBroker {
	if cfg.Prefix == "" {
		cfg.Prefix = "sb:"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 16384
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &RedisBroker{
		client:  client,
		cfg:     cfg,
		log:     log,
		queue:   make(chan pubReq, cfg.QueueSize),
		subs:    make(map[string]*subscription),
		live:    make(map[string]bool),
		changed: make(chan struct{}, 1),
	}
	b.healthy.Store(true)
	return b
}

func (b *RedisBroker) channel(t Topic) string {
	return b.cfg.Prefix + "ch:" + string(t.Kind) + ":" + t.Name
}

// Healthy implements Broker.
func (b *RedisBroker) Healthy() bool { return b.healthy.Load() && !b.failing.Load() }

// Publish implements Broker.
func (b *RedisBroker) Publish(e *Envelope, local int, done func(int, error)) {
	if done == nil {
		done = func(int, error) {}
	}
	if !b.Healthy() {
		done(local, fmt.Errorf("%w: redis unreachable", ErrBrokerUnavailable))
		return
	}
	r := pubReq{e: e, local: local, done: done}
	select {
	case b.queue <- r:
		return
	default:
	}
	// Redis is up but slower than the clients: hold the sender (its read
	// goroutine, so TCP pushes back on that client) for at most one
	// pipeline timeout before giving up.
	t := time.NewTimer(b.cfg.Timeout)
	defer t.Stop()
	select {
	case b.queue <- r:
	case <-t.C:
		done(local, fmt.Errorf("%w: publish queue full", ErrBrokerUnavailable))
	}
}

// Subscribe implements Broker: the subscription manager sends SUBSCRIBE,
// and Subscribe waits for Redis to confirm it.
func (b *RedisBroker) Subscribe(ctx context.Context, t Topic) error {
	ch := b.channel(t)
	b.mu.Lock()
	s := b.subs[ch]
	if s == nil {
		s = &subscription{ready: make(chan struct{})}
		b.subs[ch] = s
		if b.live[ch] { // still subscribed on the connection
			s.confirmed = true
			close(s.ready)
		}
		b.wake()
	}
	s.refs++
	b.mu.Unlock()
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		b.Unsubscribe(t)
		return fmt.Errorf("%w: subscribe: %w", ErrBrokerUnavailable, ctx.Err())
	}
}

// Unsubscribe implements Broker.
func (b *RedisBroker) Unsubscribe(t Topic) {
	ch := b.channel(t)
	b.mu.Lock()
	if s := b.subs[ch]; s != nil {
		if s.refs--; s.refs <= 0 {
			delete(b.subs, ch)
			b.wake()
		}
	}
	b.mu.Unlock()
}

func (b *RedisBroker) wake() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// Run implements Broker.
func (b *RedisBroker) Run(ctx context.Context, deliver func(*Envelope) int, resubscribed func()) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.publishLoop(ctx) }()
	go func() { defer wg.Done(); b.probeLoop(ctx) }()
	b.subscribeLoop(ctx, deliver, resubscribed)
	wg.Wait()
	return nil
}

// publishLoop sends queued publishes in pipelines, in order.
func (b *RedisBroker) publishLoop(ctx context.Context) {
	batch := make([]pubReq, 0, b.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			// What the node queued while shutting down (the leave events of
			// its last connections) still goes out, within one timeout.
			b.drain(context.WithoutCancel(ctx), batch)
			return
		case r := <-b.queue:
			batch = b.fill(append(batch[:0], r))
			b.flush(ctx, batch)
			clear(batch)
		}
	}
}

// fill adds queued publishes to batch, up to BatchSize, without waiting.
func (b *RedisBroker) fill(batch []pubReq) []pubReq {
	for len(batch) < b.cfg.BatchSize {
		select {
		case r := <-b.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// drain flushes whatever is queued, until the queue is empty or Timeout
// has passed; what is left then fails.
func (b *RedisBroker) drain(ctx context.Context, batch []pubReq) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	for ctx.Err() == nil {
		batch = b.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		b.flush(ctx, batch)
		clear(batch)
	}
	for {
		select {
		case r := <-b.queue:
			r.done(r.local, fmt.Errorf("%w: shutting down", ErrBrokerUnavailable))
		default:
			return
		}
	}
}

// flush sends one pipeline and reports each result.
func (b *RedisBroker) flush(ctx context.Context, batch []pubReq) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	cmds := b.exec(ctx, batch, nil)
	if retry := noScript(cmds); retry != nil {
		// Redis does not know the script yet (first use, or a restart emptied
		// its cache): EVAL loads it.
		// Only the refused commands run again, so nothing is published twice.
		again := b.exec(ctx, batch, retry)
		for i, c := range again {
			if c != nil {
				cmds[i] = c
			}
		}
	}
	failed := false
	for i, r := range batch {
		n, err := cmdInt(cmds[i])
		if err != nil {
			failed = true
			r.done(r.local, fmt.Errorf("%w: %w", ErrBrokerUnavailable, err))
			continue
		}
		if r.e.SelfCounted {
			n--
		}
		r.done(max(int(n), r.local), nil)
	}
	if failed != b.failing.Load() {
		b.failing.Store(failed)
		if failed {
			b.log.Error("cannot publish to redis; messages to other nodes fail with unavailable")
		} else {
			b.log.Info("publishing to redis again")
		}
	}
}

// exec pipelines the batch: a counting publish script per envelope, or a
// plain PUBLISH for control envelopes. With only set, it sends just those
// entries, with EVAL instead of EVALSHA.
func (b *RedisBroker) exec(ctx context.Context, batch []pubReq, only []bool) []redis.Cmder {
	pipe := b.client.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	eval := only != nil
	for i, r := range batch {
		if eval && !only[i] {
			continue
		}
		e := r.e
		payload, _ := e.MarshalBinary() // never fails
		t := e.Topic()
		ch := b.channel(t)
		self := 0
		if e.SelfCounted {
			self = 1
		}
		skip := strconv.Itoa(r.local + self)
		switch {
		case t.Kind == TopicNode || e.Kind == KindDisconnect:
			cmds[i] = pipe.Publish(ctx, ch, payload)
		case t.Kind == TopicUser:
			cmds[i] = runScript(ctx, pipe, eval, []string{b.cfg.Prefix + "user:" + e.User}, ch, payload, skip, e.Action)
		default:
			cmds[i] = runScript(ctx, pipe, eval, []string{b.cfg.Prefix + "action:" + e.Action}, ch, payload, skip)
		}
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	return cmds
}

func runScript(ctx context.Context, pipe redis.Pipeliner, eval bool, keys []string, args ...any) redis.Cmder {
	if eval {
		return publishScript.Eval(ctx, pipe, keys, args...)
	}
	return publishScript.EvalSha(ctx, pipe, keys, args...)
}

// cmdInt reads the count a publish returned: the script's count of the
// target's connections, or, for a plain PUBLISH, 0 (no count was asked).
func cmdInt(c redis.Cmder) (int64, error) {
	switch c := c.(type) {
	case *redis.Cmd:
		return c.Int64()
	default:
		return 0, c.Err()
	}
}

// noScript marks the commands Redis refused for an unknown script, or
// returns nil when there are none.
func noScript(cmds []redis.Cmder) []bool {
	var marks []bool
	for i, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			if marks == nil {
				marks = make([]bool, len(cmds))
			}
			marks[i] = true
		}
	}
	return marks
}

// probeLoop publishes a probe to this node's channel; subscribeLoop records
// when it comes back. A subscription that stays silent is rebuilt.
func (b *RedisBroker) probeLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.ProbeInterval)
	defer t.Stop()
	ch := b.channel(Topic{TopicNode, b.cfg.Node})
	probe, _ := (&Envelope{Kind: KindProbe, Origin: b.cfg.Node}).MarshalBinary()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		err := b.client.Publish(pctx, ch, probe).Err()
		cancel()
		if err == nil && b.failing.Load() {
			b.failing.Store(false)
			b.log.Info("publishing to redis again")
		}
		stale := time.Since(time.Unix(0, b.lastProbe.Load())) > 3*b.cfg.ProbeInterval+b.cfg.Timeout
		if stale == b.healthy.Load() {
			b.healthy.Store(!stale)
			if stale {
				b.log.Error("redis pub/sub delivers nothing; cross-node messages fail with unavailable until it recovers")
			} else {
				b.log.Info("redis pub/sub delivering again")
			}
		}
	}
}

// subscribeLoop keeps one PubSub connection subscribed to what the node
// needs, delivers what arrives, and rebuilds the PubSub when it goes silent.
func (b *RedisBroker) subscribeLoop(ctx context.Context, deliver func(*Envelope) int, resubscribed func()) {
	b.lastProbe.Store(time.Now().UnixNano())
	first := true
	for ctx.Err() == nil {
		ps := b.client.Subscribe(ctx)
		lost := b.receive(ctx, ps, deliver, resubscribed, first)
		_ = ps.Close() // rebuilt below or shutting down
		first = false
		if lost {
			b.log.Warn("rebuilding redis subscription")
		}
	}
}

// receive runs one PubSub until ctx ends or it stops delivering (lost).
func (b *RedisBroker) receive(ctx context.Context, ps *redis.PubSub, deliver func(*Envelope) int, resubscribed func(), first bool) bool {
	var lost atomic.Bool
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	clear(b.live)
	b.mu.Unlock()
	active := make(map[string]bool) // channels SUBSCRIBE was sent for on ps
	var mgr sync.WaitGroup
	mgr.Add(1)
	go func() {
		defer mgr.Done()
		b.manage(rctx, ps, active)
	}()
	defer mgr.Wait()

	go func() {
		<-rctx.Done()
		_ = ps.Close() // unblocks Receive
	}()
	// Watchdog: a subscription that misses probes is rebuilt.
	go func() {
		t := time.NewTicker(b.cfg.ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if time.Since(time.Unix(0, b.lastProbe.Load())) > 5*b.cfg.ProbeInterval+2*b.cfg.Timeout {
					lost.Store(true)
					b.lastProbe.Store(time.Now().UnixNano()) // give the new one time
					cancel()
					_ = ps.Close()
					return
				}
			}
		}
	}()

	broken := !first // a rebuilt PubSub counts as a reconnect
	backoff := 100 * time.Millisecond
	var env Envelope
	for {
		msg, err := ps.Receive(rctx)
		if err != nil {
			if rctx.Err() != nil {
				return lost.Load()
			}
			if !broken {
				b.log.Warn("redis subscription lost; reconnecting", "err", err)
			}
			broken = true
			select {
			case <-rctx.Done():
				return lost.Load()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
			}
			if broken {
				broken = false
				b.log.Info("redis subscription re-established; rewriting bindings")
				b.lastProbe.Store(time.Now().UnixNano())
				if resubscribed != nil {
					go resubscribed()
				}
			}
		case *redis.Message:
			if err := env.UnmarshalBinary([]byte(m.Payload)); err != nil {
				continue
			}
			if env.Kind == KindProbe {
				if env.Origin == b.cfg.Node {
					b.lastProbe.Store(time.Now().UnixNano())
				}
				continue
			}
			deliver(&env)
		}
	}
}

func (b *RedisBroker) confirm(ch string) {
	b.mu.Lock()
	b.live[ch] = true
	if s := b.subs[ch]; s != nil && !s.confirmed {
		s.confirmed = true
		close(s.ready)
	}
	b.mu.Unlock()
}

// manage sends SUBSCRIBE/UNSUBSCRIBE so that ps follows b.subs.
func (b *RedisBroker) manage(ctx context.Context, ps *redis.PubSub, active map[string]bool) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		var add, del []string
		b.mu.Lock()
		for ch := range b.subs {
			if !active[ch] {
				add = append(add, ch)
			}
		}
		for ch := range active {
			if b.subs[ch] == nil {
				del = append(del, ch)
			}
		}
		b.mu.Unlock()
		failed := false
		if len(add) > 0 {
			if err := ps.Subscribe(ctx, add...); err != nil {
				failed = true
			} else {
				for _, ch := range add {
					active[ch] = true
				}
			}
		}
		if len(del) > 0 && !failed {
			if err := ps.Unsubscribe(ctx, del...); err != nil {
				failed = true
			} else {
				b.mu.Lock()
				for _, ch := range del {
					delete(active, ch)
					delete(b.live, ch)
				}
				b.mu.Unlock()
			}
		}
		if failed {
			retry.Reset(200 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-b.changed:
		case <-retry.C:
		}
	}
}
