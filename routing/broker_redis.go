package routing

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/session"
)

var (
	_ Broker          = (*RedisBroker)(nil)
	_ DirectPublisher = (*RedisBroker)(nil)
)

// RedisBrokerConfig configures a RedisBroker. Zero values mean the defaults.
type RedisBrokerConfig struct {
	// Node is this node's id. Required.
	Node string
	// QueueSize is the number of publishes waiting for Redis. When it is
	// full, Publish waits up to Timeout for room (back-pressure on the
	// sending client), then fails with ErrBrokerUnavailable. Default 16384.
	QueueSize int
	// BatchSize is the largest pipeline sent at once. Default 512.
	BatchSize int
	// Timeout bounds one pipeline, and a subscription request. Default 2s.
	Timeout time.Duration
	// ProbeInterval is how often the node publishes a probe to itself to
	// check that its subscription still delivers. Default 2s.
	ProbeInterval time.Duration
	// Mailbox keeps direct messages (docs/protocol.md, "The mailbox"): PublishDirect appends
	// to it in the same script that routes. Default nil: no mailbox.
	Mailbox *session.RedisMailbox
	// Logger receives state changes (never per message). Default: warnings
	// and errors to stderr, as routing.Config's.
	Logger *slog.Logger
}

func (c *RedisBrokerConfig) setDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = 16384
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 512
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
}

// RedisBroker routes envelopes between nodes over Redis pub/sub, on a
// single Redis or a Redis Cluster (sharded pub/sub there).
//
// Publishing (broker_redis_publish.go): each envelope is one run of the
// store's route script, pipelined with the others waiting: the script
// reads the target's route hash (which nodes hold its connections, and how
// many), publishes on each such node's channel and counts the connections
// of the nodes whose subscription took it. One round trip per message, one
// shard of a cluster, and a cost independent of the number of connections.
//
// Subscribing (broker_redis_subscribe.go): a node subscribes to one
// channel per target it holds (a user in an action, an action) and to its
// own channel, with reference counts; on a cluster one subscription
// connection per shard that holds such a channel.
//
// Liveness (broker_redis_probe.go): the node publishes a probe to its own
// channel; a probe that no subscription takes, or that does not come back,
// marks the broker unhealthy and rebuilds the subscription.
type RedisBroker struct {
	store *session.RedisStore
	cfg   RedisBrokerConfig
	log   *slog.Logger
	queue chan *pubReq

	probeOK   atomic.Bool
	lastProbe atomic.Int64 // unix nanos of the last probe received
	failing   atomic.Bool  // publishing failed; cleared by a successful pipeline

	subs subscriptions
	// historyReplayed counts envelopes replayed from histories after a
	// broken subscription, historyFailed replays that could not read.
	historyReplayed atomic.Uint64
	historyFailed   atomic.Uint64
	// resubscribed is set by OnResubscribed before Run.
	resubscribed func(Topic)
}

// NewRedisBroker returns a broker that runs the route scripts of store
// and uses its Redis client. It does no I/O; call Run.
func NewRedisBroker(store *session.RedisStore, cfg RedisBrokerConfig) (*RedisBroker, error) {
	if cfg.Node == "" {
		return nil, errors.New("routing: RedisBrokerConfig.Node is required")
	}
	cfg.setDefaults()
	b := &RedisBroker{
		store: store,
		cfg:   cfg,
		log:   cfg.Logger,
		queue: make(chan *pubReq, cfg.QueueSize),
	}
	b.subs.init(b)
	b.probeOK.Store(true)
	return b, nil
}

// HistoryStats returns how many envelopes were replayed from histories
// after broken subscriptions, and how many replays failed to read.
func (b *RedisBroker) HistoryStats() (replayed, failed uint64) {
	return b.historyReplayed.Load(), b.historyFailed.Load()
}

// OnResubscribed implements Resubscriber.
func (b *RedisBroker) OnResubscribed(f func(Topic)) { b.resubscribed = f }

// Healthy implements Broker: the last probe came back and the last
// pipeline went through.
func (b *RedisBroker) Healthy() bool { return b.probeOK.Load() && !b.failing.Load() }

// Run implements Broker. It returns once ctx has ended and what was queued
// for publishing has gone out (within one Timeout).
func (b *RedisBroker) Run(ctx context.Context, deliver func(*Envelope) int) error {
	b.lastProbe.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); b.publishLoop(ctx) }()
	go func() { defer wg.Done(); b.probeLoop(ctx) }()
	b.subs.run(ctx, deliver)
	wg.Wait()
	return nil
}
