package routing

// The publish pipeline of RedisBroker: Publish queues a request and waits
// for its answer; one goroutine sends what is queued as pipelines, in
// order, and hands each caller its result.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/session"
)

// pubReq is one Publish (or PublishDirect) waiting for its pipeline.
type pubReq struct {
	e      *Envelope
	direct *DirectMessage // for PublishDirect
	d      DirectDelivery // the result: d.Delivery for Publish
	err    error
	done   chan struct{} // receives once d and err are set
}

var pubReqs = sync.Pool{New: func() any { return &pubReq{done: make(chan struct{}, 1)} }}

// Publish implements Broker.
func (b *RedisBroker) Publish(ctx context.Context, e *Envelope) (Delivery, error) {
	d, err := b.publish(ctx, e, nil)
	return d.Delivery, err
}

// PublishDirect implements DirectPublisher: one run of the store's direct
// route script, in the same pipelines as Publish.
func (b *RedisBroker) PublishDirect(ctx context.Context, m *DirectMessage) (DirectDelivery, error) {
	return b.publish(ctx, m.Envelope, m)
}

func (b *RedisBroker) publish(ctx context.Context, e *Envelope, direct *DirectMessage) (DirectDelivery, error) {
	if !b.Healthy() {
		return DirectDelivery{}, fmt.Errorf("%w: %w: redis unreachable", ErrBrokerUnavailable, ErrNotSent)
	}
	r := pubReqs.Get().(*pubReq) //nolint:forcetypeassert // the pool holds only *pubReq
	r.e, r.direct = e, direct
	select {
	case b.queue <- r:
	default:
		// Redis is up but slower than the clients: hold the sender (its
		// read goroutine, so TCP pushes back on that client) for at most
		// one pipeline timeout before giving up.
		t := time.NewTimer(b.cfg.Timeout)
		select {
		case b.queue <- r:
			t.Stop()
		case <-t.C:
			r.e, r.direct = nil, nil
			pubReqs.Put(r)
			return DirectDelivery{}, fmt.Errorf("%w: %w: publish queue full", ErrBrokerUnavailable, ErrNotSent)
		}
	}
	select {
	case <-r.done:
		d, err := r.d, r.err
		*r = pubReq{done: r.done}
		pubReqs.Put(r)
		return d, err
	case <-ctx.Done():
		// r is still in flight: the pipeline answers into its buffered
		// channel, and r is left to the garbage collector.
		return DirectDelivery{}, fmt.Errorf("%w: %w", ErrBrokerUnavailable, ctx.Err())
	}
}

// publishLoop sends queued publishes in pipelines, in order.
func (b *RedisBroker) publishLoop(ctx context.Context) {
	batch := make([]*pubReq, 0, b.cfg.BatchSize)
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
func (b *RedisBroker) fill(batch []*pubReq) []*pubReq {
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
func (b *RedisBroker) drain(ctx context.Context, batch []*pubReq) {
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
			r.err = fmt.Errorf("%w: shutting down", ErrBrokerUnavailable)
			r.done <- struct{}{}
		default:
			return
		}
	}
}

// flush sends one pipeline and answers each request.
//
// No envelope is ever published twice: the client never resends a command
// (session.NewRedisClient), and after NOSCRIPT (Redis restarted and lost
// its script cache) only the commands Redis refused, which did nothing,
// are sent again.
func (b *RedisBroker) flush(ctx context.Context, batch []*pubReq) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	cmds := b.exec(ctx, batch, nil)
	if retry := noScript(cmds); retry != nil {
		again := b.exec(ctx, batch, retry)
		for i, c := range again {
			if c != nil {
				cmds[i] = c
			}
		}
	}
	// Redis is failing if a command failed otherwise than with the store's
	// report of lost bindings (then Redis answered: it is reachable).
	failed := false
	for i, r := range batch {
		r.d, r.err = result(cmds[i], r.direct != nil)
		switch {
		case r.err == nil:
		case errors.Is(r.err, session.ErrBindingsLost):
			// Redis answered: it is reachable.
			r.err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, r.err)
		case !session.MaybeApplied(r.err):
			failed = true
			r.err = fmt.Errorf("%w: %w: %w", ErrBrokerUnavailable, ErrNotSent, r.err)
		default:
			failed = true
			r.err = fmt.Errorf("%w: %w", ErrBrokerUnavailable, r.err)
		}
		r.done <- struct{}{} // r belongs to its caller again
	}
	b.setFailing(failed)
}

func (b *RedisBroker) setFailing(failed bool) {
	if failed == b.failing.Load() {
		return
	}
	b.failing.Store(failed)
	if failed {
		b.log.Error("cannot publish to redis; messages to other nodes fail with unavailable")
	} else {
		b.log.Info("publishing to redis again")
	}
}

// exec pipelines the batch: the store's route script per envelope, or a
// plain publish on a node's channel. With only set, it sends just those
// entries, with EVAL instead of EVALSHA.
func (b *RedisBroker) exec(ctx context.Context, batch []*pubReq, only []bool) []redis.Cmder {
	pipe := b.store.Client().Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	eval := only != nil
	for i, r := range batch {
		if eval && !only[i] {
			continue
		}
		e := r.e
		if m := r.direct; m != nil {
			d := session.Direct{Action: e.Action, User: e.User, Sender: m.Sender, ID: m.ID,
				Header: e.AppendHeader(nil), Frame: m.Head, ToSelf: m.ToSelf}
			cmds[i] = b.store.RouteDirect(ctx, pipe, b.cfg.Mailbox, d, b.cfg.Node, time.Now(), eval)
			continue
		}
		if e.Node != "" {
			payload, _ := e.MarshalBinary() // never fails
			cmds[i] = b.publishNode(ctx, pipe, e.Node, payload)
			continue
		}
		m := session.Routed{Header: e.AppendHeader(nil), Frame: e.Payload}
		if e.Seq > 0 {
			m.Seq = strconv.FormatInt(e.Seq, 10)
		} else {
			// What a subscriber gets is kept in the target's history, so
			// that a node whose subscription breaks replays what Redis
			// dropped (broker_redis_history.go); orders to disconnect are
			// not replayed.
			m.History = e.carriesHist() && e.Conn == ""
		}
		cmds[i] = b.store.Route(ctx, pipe, session.Target{Action: e.Action, User: e.User}, b.cfg.Node, m, eval)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	return cmds
}

// publishNode publishes payload on node's own channel.
func (b *RedisBroker) publishNode(ctx context.Context, c redis.Cmdable, node string, payload []byte) *redis.IntCmd {
	ch := b.store.NodeChannel(node)
	if b.store.Sharded() {
		return c.SPublish(ctx, ch, payload)
	}
	return c.Publish(ctx, ch, payload)
}

// result reads the answer to a request's command.
func result(c redis.Cmder, direct bool) (DirectDelivery, error) {
	switch c := c.(type) {
	case *redis.Cmd:
		if direct {
			r, err := session.ParseDirect(c)
			return DirectDelivery{Delivery: Delivery{Reached: r.Reached, Missed: r.Missed}, Seq: r.Seq, Dup: r.Dup, Blocked: r.Blocked}, err
		}
		r, err := session.ParseRoute(c)
		return DirectDelivery{Delivery: Delivery{Reached: r.Reached, Missed: r.Missed}}, err
	case *redis.IntCmd:
		n, err := c.Result()
		if err == nil && n == 0 {
			return DirectDelivery{Delivery: Delivery{Missed: 1}}, nil // the node is gone
		}
		return DirectDelivery{}, err
	default:
		return DirectDelivery{}, c.Err()
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
