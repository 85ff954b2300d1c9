package routing

// The publish pipeline of RedisBroker: Publish queues a request and waits
// for its answer; one goroutine sends what is queued as pipelines, in
// order, and hands each caller its result.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/session"
)

// pubReq is one Publish waiting for its pipeline.
type pubReq struct {
	e    *Envelope
	d    Delivery
	err  error
	done chan struct{} // receives once d and err are set
}

var pubReqs = sync.Pool{New: func() any { return &pubReq{done: make(chan struct{}, 1)} }}

// Publish implements Broker.
func (b *RedisBroker) Publish(ctx context.Context, e *Envelope) (Delivery, error) {
	if !b.Healthy() {
		return Delivery{}, fmt.Errorf("%w: redis unreachable", ErrBrokerUnavailable)
	}
	r := pubReqs.Get().(*pubReq) //nolint:forcetypeassert // the pool holds only *pubReq
	r.e = e
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
			r.e = nil
			pubReqs.Put(r)
			return Delivery{}, fmt.Errorf("%w: publish queue full", ErrBrokerUnavailable)
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
		return Delivery{}, fmt.Errorf("%w: %w", ErrBrokerUnavailable, ctx.Err())
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
		r.d, r.err = result(r.e, cmds[i])
		if r.err != nil {
			failed = failed || !errors.Is(r.err, session.ErrBindingsLost)
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
		payload, _ := e.MarshalBinary() // never fails
		if e.Node != "" {
			cmds[i] = b.publishNode(ctx, pipe, e.Node, payload)
			continue
		}
		cmds[i] = b.store.Route(ctx, pipe, session.Target{Action: e.Action, User: e.User}, b.cfg.Node, payload, eval)
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

// result reads the answer to e's command.
func result(e *Envelope, c redis.Cmder) (Delivery, error) {
	switch c := c.(type) {
	case *redis.Cmd:
		r, err := session.ParseRoute(c)
		return Delivery{Reached: r.Reached, Missed: r.Missed}, err
	case *redis.IntCmd:
		n, err := c.Result()
		if err == nil && n == 0 {
			return Delivery{Missed: 1}, nil // the node is gone
		}
		return Delivery{}, err
	default:
		return Delivery{}, c.Err()
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
