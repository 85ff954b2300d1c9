// Package routing implements Switchboard's wire protocol: it upgrades
// WebSocket connections, binds them to a user id and an action in the
// session store, and routes their messages to an action or a user, locally
// and through a Broker to the other nodes.
package routing

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/olahol/melody"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/auth"
	"github.com/switchboard/switchboard/session"
)

// Config configures a Router. The zero value of every field means its
// documented default.
type Config struct {
	// Node is this node's id, unique in the cluster. Required.
	Node string
	// Store holds the bindings. Default: a new in-memory store.
	Store session.Store
	// Broker carries messages to other nodes. Default: a single-node
	// in-memory broker.
	Broker Broker
	// Verifier checks tokens; nil or not Enabled means auth is off.
	Verifier *auth.Verifier
	// AuthOptional admits anonymous clients beside token holders when auth
	// is on (AUTH_REQUIRED=false). Default false: a token is required.
	AuthOptional bool
	// TokenLeeway is added to a token's exp before a live connection is
	// closed with token_expired. Default: the Verifier's Leeway; a negative
	// value means none.
	TokenLeeway time.Duration
	// AllowedOrigins lists the Origins (scheme://host[:port], or "*") allowed
	// to connect. Default: only the server's own host. Requests without an
	// Origin header (non-browser clients) are always allowed.
	AllowedOrigins []string
	// MaxMessageBytes is the largest message read; larger ones close the
	// connection with 1009. Default 65536.
	MaxMessageBytes int64
	// OnlineTimeout is how long a new connection may wait before online.
	// Default 10s.
	OnlineTimeout time.Duration
	// RateLimit is the messages per second a connection may send; RateBurst
	// the burst. Defaults 100 and 200.
	RateLimit float64
	RateBurst int
	// NoPresenceEvents turns join/leave events off (PRESENCE_EVENTS=false).
	NoPresenceEvents bool
	// PresenceEventsLimit: events are sent only while the action has at most
	// this many users online. Default 1000.
	PresenceEventsLimit int
	// HeartbeatTTL is how long this node's heartbeat lives in the store;
	// it is refreshed every third of it. Default 15s.
	HeartbeatTTL time.Duration
	// OutboundQueue is the number of frames handed to a connection's socket
	// writer at once. Default 4. Frames beyond it wait in a per-connection
	// backlog that exists only while needed.
	OutboundQueue int
	// OutboundBufferBytes is how many bytes may wait in that backlog while
	// the connection's writer makes no progress: a backlog over it with no
	// frame written for OutboundStall closes the connection as a slow
	// consumer (1008). A client that keeps reading is not closed however
	// far it falls behind, up to OutboundMaxBytes. Default 1 MiB.
	OutboundBufferBytes int
	// OutboundStall is how long a backlog over OutboundBufferBytes may wait
	// without the writer finishing a frame. Default 2s.
	OutboundStall time.Duration
	// OutboundMaxBytes caps the backlog of a connection that reads, but
	// more slowly than it is sent to: over it, it is a slow consumer too.
	// Default 64 MiB, five bursts of RATE_BURST messages of 64 KiB.
	OutboundMaxBytes int
	// WriteWait bounds one socket write. Default 10s.
	WriteWait time.Duration
	// PongWait is how long a connection may stay silent (no pong) before it
	// is dropped; pings go out every 9/10 of it. Default 60s.
	PongWait time.Duration
	// StoreTimeout bounds each store operation done for a connection.
	// Default 5s.
	StoreTimeout time.Duration
	// Mailbox keeps direct messages for recipients who are away
	// (docs/protocol.md, "The mailbox"): every direct message is appended to it and numbered
	// with `seq`, and `online` may catch up with `since`. Default nil: the
	// mailbox is off (MAILBOX=false): a direct message to a user with no
	// connection gets user_offline, and nothing carries a seq.
	Mailbox session.Mailbox
	// Limits refuse upgrades at the door (see Limits). Default: none.
	Limits Limits
	// Events receives user.online, user.offline and undelivered direct
	// messages (webhooks). Default: none.
	Events Events
	// Registerer receives the Prometheus metrics. Default: none.
	Registerer prometheus.Registerer
	// Logger receives logs. Default: text to stderr at Warn level, so that
	// a misconfigured embedding is not silent; pass a Logger with a discard
	// handler to silence it.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Store == nil {
		c.Store = session.NewMemoryStore()
	}
	if c.Broker == nil {
		c.Broker = NewMemoryHub().Broker(c.Node)
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 65536
	}
	if c.OnlineTimeout <= 0 {
		c.OnlineTimeout = 10 * time.Second
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 100
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 200
	}
	if c.PresenceEventsLimit <= 0 {
		c.PresenceEventsLimit = 1000
	}
	if c.HeartbeatTTL <= 0 {
		c.HeartbeatTTL = 15 * time.Second
	}
	if c.OutboundQueue <= 0 {
		c.OutboundQueue = 4
	}
	if c.OutboundBufferBytes <= 0 {
		c.OutboundBufferBytes = 1 << 20
	}
	if c.OutboundStall <= 0 {
		c.OutboundStall = 2 * time.Second
	}
	if c.OutboundMaxBytes <= 0 {
		c.OutboundMaxBytes = 64 << 20
	}
	c.OutboundMaxBytes = max(c.OutboundMaxBytes, c.OutboundBufferBytes)
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.PongWait <= 0 {
		c.PongWait = 60 * time.Second
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if c.TokenLeeway == 0 && c.Verifier != nil {
		c.TokenLeeway = c.Verifier.Leeway()
	}
	c.TokenLeeway = max(c.TokenLeeway, 0)
}

// Router serves WebSocket connections and routes their messages. It is safe
// for concurrent use.
type Router struct {
	cfg     Config
	node    string
	store   session.Store
	broker  Broker
	verify  *auth.Verifier
	log     *slog.Logger
	m       *melody.Melody
	metrics *metrics
	origins map[string]bool
	// queueLimit is cfg.OutboundQueue as the type Conn counts in.
	queueLimit int32
	anyOrig    bool
	epoch      time.Time // see clock
	door       *door     // cfg.Limits' state

	sessions sync.Map // *melody.Session → *Conn

	mu      sync.RWMutex
	conns   map[string]*Conn       // every connection, by id
	actions map[string][]*Conn     // online connections by action
	users   map[string][]*Conn     // online connections by user
	cmds    map[string]HandlerFunc // custom message types

	largeMu sync.Mutex
	large   map[string]time.Time // actions over PresenceEventsLimit users, until when

	pendingMu sync.Mutex
	pending   []pendingUnbind // whose Unbind failed; retried every heartbeat

	leavesMu sync.Mutex
	leaves   []pendingLeave // leave events that could not be sent; see presence_pending.go

	lost       chan struct{} // a publish found the store without this node's bindings
	beaten     atomic.Bool   // the first heartbeat was written
	restoredAt atomic.Int64  // unix nanos of the last rewrite of this node's bindings
	// beat is the heartbeat in flight (nil between beats): Redis may have
	// found this node's heartbeat gone and written it again, and then run
	// route scripts as if nothing was lost, before the node knows.
	beat      atomic.Pointer[heartbeatCall]
	troubleAt atomic.Int64 // unix nanos of the last failed heartbeat or lost heartbeat

	// The mailbox (mailbox.go); mbox is nil when it is off.
	mbox    session.Mailbox
	seed    maphash.Seed
	stripes [mailStripes]sync.Mutex // order appends and deliveries per mailbox
	// repairReads bounds the mailbox reads of repairs running at once: a
	// broken subscription repairs every connection of its users together.
	repairReads chan struct{}
	catchups    sync.Map     // *Conn → *catchup, while it catches up
	catchingUp  atomic.Int32 // entries in catchups
	blockSeqMu  sync.Mutex
	blockSeq    map[[3]string]int64 // see blockedResult

	// Embedding guards (guards.go): Run was called; log rate limits.
	running   atomic.Bool
	runLog    logLimiter
	originLog logLimiter

	wg       sync.WaitGroup // one per connection being served, and per catch-up
	closing  atomic.Bool
	storeOK  atomic.Bool
	stopOnce sync.Once
}

// New returns a Router. It does no I/O and starts no goroutine; call Run.
func New(cfg Config) (*Router, error) {
	if cfg.Node == "" {
		return nil, errors.New("routing: Config.Node is required")
	}
	if !ValidNodeID(cfg.Node) {
		return nil, fmt.Errorf("routing: node id %q: want 1-128 characters of A-Z a-z 0-9 _ . : -", cfg.Node)
	}
	cfg.setDefaults()
	r := &Router{
		cfg:         cfg,
		node:        cfg.Node,
		store:       cfg.Store,
		broker:      cfg.Broker,
		verify:      cfg.Verifier,
		log:         cfg.Logger,
		metrics:     newMetrics(cfg.Registerer),
		origins:     make(map[string]bool),
		conns:       make(map[string]*Conn),
		repairReads: make(chan struct{}, repairConcurrency),
		actions:     make(map[string][]*Conn),
		users:       make(map[string][]*Conn),
		cmds:        make(map[string]HandlerFunc),
		large:       make(map[string]time.Time),
		lost:        make(chan struct{}, 1),
		mbox:        cfg.Mailbox,
		seed:        maphash.MakeSeed(),
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimRight(strings.ToLower(strings.TrimSpace(o)), "/")
		if o == "*" {
			r.anyOrig = true
		} else if o != "" {
			r.origins[o] = true
		}
	}
	if cfg.Mailbox != nil {
		r.metrics.registerMailbox(cfg.Registerer, cfg.Mailbox)
	}
	if h, ok := cfg.Broker.(historyStats); ok {
		registerHistory(cfg.Registerer, h)
	}
	r.queueLimit = int32(cfg.OutboundQueue)
	r.epoch = time.Now()
	r.door = newDoor(cfg.Limits)
	r.storeOK.Store(true)
	r.m = r.newMelody()
	return r, nil
}

// queueSlack is melody's queue beyond OutboundQueue (see newMelody).
const queueSlack = 1

func (r *Router) newMelody() *melody.Melody {
	m := melody.New()
	m.Config.MaxMessageSize = r.cfg.MaxMessageBytes
	// Room for the queue (Conn.write reserves a place before handing a
	// frame over) plus the close frame: melody itself never drops a frame.
	m.Config.MessageBufferSize = r.cfg.OutboundQueue + queueSlack
	m.Config.WriteWait = r.cfg.WriteWait
	m.Config.PongWait = r.cfg.PongWait
	m.Config.PingPeriod = r.cfg.PongWait * 9 / 10
	m.Config.ConcurrentMessageHandling = false // one message at a time per connection keeps order
	m.Upgrader = &websocket.Upgrader{
		// An idle connection holds no write buffer: writes borrow one from
		// the pool. The 512-byte read buffer replaces net/http's 4 KiB one
		// (it holds a typical message; larger frames are read straight from
		// the socket). Together they save about 7 KiB per connection.
		ReadBufferSize:    512,
		WriteBufferPool:   &sync.Pool{},
		CheckOrigin:       r.checkOrigin,
		EnableCompression: false, // a small compressed frame can inflate past every limit
		HandshakeTimeout:  10 * time.Second,
	}
	m.HandleConnect(r.onConnect)
	m.HandleDisconnect(r.onDisconnect)
	m.HandleMessage(r.onMessage)
	m.HandleMessageBinary(r.onBinary)
	m.HandleError(r.onError)
	m.HandleSentMessage(func(s *melody.Session, _ []byte) {
		if c := r.connOf(s); c != nil {
			c.sent()
		}
	})
	return m
}

// Prepare removes bindings a previous process with this node id may have
// left (a restart before its heartbeat expired) and writes the first
// heartbeat, so that other nodes do not reap new bindings. Call it before
// serving. A store that cannot be reached is not an error here: /readyz
// reports it, and Run retries.
func (r *Router) Prepare(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	removed, err := r.store.RemoveNode(ctx, r.node)
	if err != nil {
		r.log.Warn("store unreachable at start", "err", err)
		return
	}
	if len(removed) > 0 {
		r.log.Info("removed bindings left by a previous process of this node", "bindings", len(removed))
	}
	r.usersOffline(removed) // Events hook
	for _, b := range removed {
		if b.Last {
			r.sendPresenceEvent(ctx, "leave", b.UserID, b.Action, "")
		}
	}
	r.heartbeat(ctx)
}

// Run runs the node's background work: delivery from other nodes, the
// heartbeat (which notices when the store lost this node's bindings and
// rewrites them), retrying unbinds that failed, and reaping dead nodes. It
// returns when ctx ends, once the broker has stopped.
func (r *Router) Run(ctx context.Context) error {
	r.running.Store(true) // online is refused before: see refuseNotRunning
	if rs, ok := r.broker.(Resubscriber); ok && r.mbox != nil {
		rs.OnResubscribed(r.resubscribed)
	}
	go func() {
		if err := r.broker.Subscribe(ctx, Topic{Node: r.node}); err != nil {
			r.log.Warn("subscribing to the node channel", "err", err)
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- r.broker.Run(ctx, r.deliverRemote) }()
	r.heartbeat(ctx)
	tick := time.NewTicker(r.heartbeatEvery())
	defer tick.Stop()
	reapEvery := r.cfg.HeartbeatTTL / 2
	nextReap := time.Now().Add(jitter(reapEvery))
	for {
		select {
		case <-ctx.Done():
			return <-errc
		case <-r.lost:
			r.heartbeat(ctx)
		case now := <-tick.C:
			r.heartbeat(ctx)
			r.retryPending(ctx)
			r.retryLeaves(ctx)
			if sw, ok := r.mbox.(interface{ Sweep() }); ok {
				sw.Sweep() // an in-memory mailbox drops what expired
			}
			if now.After(nextReap) {
				r.reap(ctx)
				nextReap = now.Add(jitter(reapEvery))
			}
		}
	}
}

// clock returns the milliseconds since the router was made, wrapping after
// 49 days: differences of clock values are right for shorter intervals.
func (r *Router) clock() uint32 {
	return uint32(time.Since(r.epoch).Milliseconds())
}

// heartbeatEvery is how often the node refreshes its heartbeat: a third of
// its lifetime, and at least every second, since the heartbeat is also how
// the node notices that the store lost its bindings.
func (r *Router) heartbeatEvery() time.Duration {
	return min(r.cfg.HeartbeatTTL/3, time.Second)
}

// ValidNodeID reports whether id may name a node: 1-128 characters of
// A-Z a-z 0-9 _ . : - (it ends Redis channel names, after a '#').
func ValidNodeID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d)
}

// bindingsLost is called when a publish found that the store lost this
// node's bindings: the Run loop checks and rewrites them at once.
func (r *Router) bindingsLost() {
	r.storeOK.Store(false)
	select {
	case r.lost <- struct{}{}:
	default:
	}
}

// heartbeat refreshes this node's heartbeat. When the store answers again
// after failing, or answers without this node's previous heartbeat (Redis
// restarted empty, was flushed, or the heartbeat expired while this node
// could not reach it, so others may have reaped its bindings), it rewrites
// the node's bindings; until that is done the node is not ready and
// messages get unavailable rather than a false user_offline.
func (r *Router) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if r.broker.Healthy() {
		r.metrics.brokerUp.Set(1)
	} else {
		r.metrics.brokerUp.Set(0)
	}
	call := &heartbeatCall{done: make(chan struct{})}
	r.beat.Store(call)
	alive, err := r.store.Heartbeat(ctx, r.node, r.cfg.HeartbeatTTL)
	if err != nil || !alive {
		r.troubleAt.Store(time.Now().UnixNano())
	}
	first := err == nil && !r.beaten.Swap(true)
	if err == nil && !alive && !first {
		// Before the beat ends: from here until the rewrite is done, and
		// for a while after it, offlineUncertain says so.
		r.storeOK.Store(false)
	}
	r.beat.Store(nil)
	close(call.done)
	if err != nil {
		if r.storeOK.Swap(false) {
			r.log.Error("store unreachable", "err", err)
		}
		r.metrics.storeUp.Set(0)
		r.metrics.storeErrors.Inc()
		return
	}
	if !alive && !first {
		r.log.Warn("the store lost this node's heartbeat (restarted, flushed or expired); rewriting bindings")
	}
	if !r.storeOK.Load() {
		r.log.Info("store reachable; rewriting bindings")
		if !r.restore(ctx) {
			return
		}
		r.restoredAt.Store(time.Now().UnixNano())
		r.storeOK.Store(true)
	}
	r.metrics.storeUp.Set(1)
}

// restore writes every live binding of this node back to the store. It
// reports whether that worked.
func (r *Router) restore(ctx context.Context) bool {
	r.mu.RLock()
	bs := make([]session.Binding, 0, len(r.conns))
	for _, c := range r.conns {
		if c.state.Load() == stateOnline {
			bs = append(bs, c.binding())
		}
	}
	r.mu.RUnlock()
	if err := r.store.Restore(ctx, bs); err != nil {
		r.log.Error("rewriting bindings failed", "bindings", len(bs), "err", err)
		r.metrics.storeErrors.Inc()
		return false
	}
	r.log.Info("bindings rewritten", "bindings", len(bs))
	return true
}

// heartbeatCall is one heartbeat in flight; done is closed once its answer
// has been taken into account (storeOK).
type heartbeatCall struct{ done chan struct{} }

// offlineUncertain reports whether a user found without connections may
// have some that the store does not list yet, so that the sender gets
// unavailable rather than a false user_offline: this node's bindings are
// being rewritten, or were within othersRestoring's window, or a
// heartbeat in flight may have found them lost (it is waited for, at most
// StoreTimeout; rare: only for a message that reached nobody, during the
// round trip of a heartbeat).
func (r *Router) offlineUncertain() bool {
	if call := r.beat.Load(); call != nil {
		t := time.NewTimer(r.cfg.StoreTimeout)
		select {
		case <-call.done:
			t.Stop()
		case <-t.C:
			return true
		}
	}
	return !r.storeOK.Load() || r.othersRestoring()
}

// othersRestoring reports whether this node rewrote its bindings within
// the last HeartbeatTTL. The store lost them for every node (restarted or
// flushed) then, so other nodes may not have rewritten theirs yet: each
// starts at its next heartbeat, within one period, and one with many
// bindings takes a while. A live node beats within HeartbeatTTL (else the
// others count it dead), so until then a target found without
// connections may well have some there.
func (r *Router) othersRestoring() bool {
	at := r.restoredAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < r.cfg.HeartbeatTTL
}

// maxPending bounds the unbinds kept for retrying. Past it the oldest are
// dropped (and logged): their bindings stay until this node restarts or
// is reaped.
const maxPending = 1 << 20

// addPending records an unbind that failed, for retryPending.
func (r *Router) addPending(p pendingUnbind) {
	r.pendingMu.Lock()
	defer r.pendingMu.Unlock()
	if len(r.pending) == 0 {
		r.log.Warn("unbinding failed; retrying in the background", "conn", p.conn)
	}
	if len(r.pending) >= maxPending {
		r.log.Error("too many failed unbinds pending; dropping the oldest", "dropped", len(r.pending)-maxPending+1)
		r.pending = r.pending[len(r.pending)-maxPending+1:]
	}
	r.pending = append(r.pending, p)
	r.metrics.pendingUnbinds.Set(float64(len(r.pending)))
}

// pendingUnbind is a connection whose Unbind failed.
type pendingUnbind struct {
	conn, user, action string
	// leave: a leave is owed if the user has no connection left in the
	// action (the connection was online, its join was sent).
	leave bool
}

// retryPending retries the unbinds that failed, sending the leave events
// they owe. It stops at the first failure; the rest waits for the next tick.
// An unbind that failed with a timeout may still have been carried out
// (Redis ran it once it woke up): the retry then finds no binding, and the
// leave the first attempt could not report is sent if the user has no
// connection left in the action.
//
// It waits while the store is not known good (the heartbeat of this tick
// failed, or bindings are being rewritten): the leave events it owes would
// be refused then, and lost.
func (r *Router) retryPending(ctx context.Context) {
	if !r.storeOK.Load() {
		return
	}
	r.pendingMu.Lock()
	pending := r.pending
	r.pending = nil
	r.pendingMu.Unlock()
	if len(pending) == 0 {
		return
	}
	done := 0
	for _, p := range pending {
		uctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
		removed, err := r.store.Unbind(uctx, p.conn)
		last := err == nil && removed.Last
		if errors.Is(err, session.ErrNotFound) && p.leave {
			var n int
			n, err = r.store.CountUser(uctx, p.action, p.user)
			last = err == nil && n == 0
		}
		cancel()
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			break
		}
		done++
		if last && p.leave {
			r.userOffline(p.user, p.action) // Events hook
			r.sendPresenceEvent(ctx, "leave", p.user, p.action, "")
		}
	}
	r.pendingMu.Lock()
	r.pending = append(pending[done:], r.pending...)
	left := len(r.pending)
	r.pendingMu.Unlock()
	r.metrics.pendingUnbinds.Set(float64(left))
	if left == 0 {
		r.log.Info("pending unbinds done", "unbound", done)
	}
}

// reap removes the bindings of dead nodes and sends the leave events they owed.
//
// It waits for a whole HeartbeatTTL after this node's own heartbeat failed
// or was found expired: the store was stalled or paused then, so every
// node's heartbeat may have expired meanwhile, though the nodes are alive;
// each rewrites its own within a heartbeat period, and a node still without
// one a TTL later is dead.
func (r *Router) reap(ctx context.Context) {
	if at := r.troubleAt.Load(); !r.storeOK.Load() || (at != 0 && time.Since(time.Unix(0, at)) < r.cfg.HeartbeatTTL) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	removed, err := r.store.Reap(rctx) // on error, removed still holds what was done
	cancel()
	if err != nil {
		r.metrics.storeErrors.Inc()
	}
	if len(removed) > 0 {
		r.log.Info("removed bindings of dead nodes", "bindings", len(removed))
	}
	r.usersOffline(removed) // Events hook
	r.sendLeaves(ctx, removed)
}

// sendLeaves sends the leave events owed for removed bindings, each with a
// timeout of its own: a slow one does not cost the others theirs.
func (r *Router) sendLeaves(ctx context.Context, removed []session.Removed) {
	for _, b := range removed {
		if b.Last {
			r.sendPresenceEvent(ctx, "leave", b.UserID, b.Action, "")
		}
	}
}

// sendPresenceEvent sends a join or leave to the action's connections,
// cluster-wide, unless events are off or the action is too large.
func (r *Router) sendPresenceEvent(ctx context.Context, typ, user, action, exclude string) {
	if r.cfg.NoPresenceEvents {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	allowed, err := r.presenceEventsAllowed(ctx, action, typ == "join")
	if err != nil && typ == "leave" {
		r.addPendingLeave(pendingLeave{user: user, action: action})
		return
	}
	if !allowed {
		return
	}
	kind := KindJoin
	if typ == "leave" {
		kind = KindLeave
	}
	e := &Envelope{Kind: kind, Origin: r.node, Exclude: exclude, Action: action, Payload: eventFrame(typ, user, action)}
	r.deliverLocal(e)
	// Counted in the metrics; a join has nobody to tell. A leave is owed:
	// it is retried (see retryLeaves).
	if _, err := r.publish(ctx, e); err != nil && typ == "leave" {
		r.addPendingLeave(pendingLeave{user: user, action: action, local: true, missed: errors.Is(err, errUnreachable)})
	}
}

// presenceEventsAllowed reports whether action has at most
// PresenceEventsLimit users. Counting connections is cheap; counting
// distinct users may not be (Redis: it reads the whole action), so once an
// action is found too large, joins (cached) trust that answer for a second
// instead of recounting on every connect: a crowd connecting to a huge
// action costs one count a second. Leaves always recount, so the one that
// brings an action back under the limit is sent.
func (r *Router) presenceEventsAllowed(ctx context.Context, action string, cached bool) (bool, error) {
	n, err := r.store.CountAction(ctx, action)
	if err != nil {
		return false, err
	}
	if n <= r.cfg.PresenceEventsLimit {
		return true, nil
	}
	now := time.Now()
	r.largeMu.Lock()
	until, known := r.large[action]
	r.largeMu.Unlock()
	if cached && known && now.Before(until) {
		return false, nil
	}
	users, err := r.store.CountUsers(ctx, action)
	if err != nil {
		return false, err
	}
	if users <= r.cfg.PresenceEventsLimit {
		return true, nil
	}
	r.largeMu.Lock()
	for a, u := range r.large { // forget stale entries; the map stays small
		if now.After(u) {
			delete(r.large, a)
		}
	}
	r.large[action] = now.Add(time.Second)
	r.largeMu.Unlock()
	return false, nil
}

// deliverRemote handles an envelope from another node.
//
// Brokers do not echo a node's envelopes back to it, except direct
// messages routed whole (DirectPublisher), which reach this node's
// recipients this way too.
func (r *Router) deliverRemote(e *Envelope) int {
	if e.Origin == r.node && e.Exclude != "" && e.Kind == KindMessage {
		defer r.echoed(e.Exclude)
	}
	if e.Kind == KindDisconnect || e.Kind == KindBan {
		return r.disconnectLocal(e)
	}
	n := r.deliverLocal(e)
	if e.Kind == KindMessage {
		r.metrics.delivered[deliveryKind(e)].Add(float64(n))
	}
	return n
}

// disconnect closes c on behalf of the server API: a status message, then 1000.
func (r *Router) disconnect(c *Conn, reason string) {
	frame := []byte(`{"type":"status","status":"disconnected","reason":`)
	frame = appendJSONString(frame, reason)
	frame = append(frame, '}')
	c.setReason("api") // first reason wins: close's own is then ignored
	c.close(websocket.CloseNormalClosure, reason, frame)
}

// Ready reports whether the node can serve: store reachable, broker
// healthy, token keys loaded.
func (r *Router) Ready(ctx context.Context) error {
	if r.closing.Load() {
		return errors.New("shutting down")
	}
	if err := r.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !r.storeOK.Load() {
		return errors.New("store: rewriting this node's bindings")
	}
	if !r.broker.Healthy() {
		return errors.New("broker: cannot route to other nodes")
	}
	if r.verify.Enabled() && !r.verify.Ready() {
		return errors.New("auth: signing keys not loaded yet")
	}
	return nil
}

// Shutdown stops accepting connections, closes every connection with 1001
// ("going away"), waits for their bindings to be removed, and removes what
// is left of this node's bindings, sending the leave events they owe. When
// ctx ends first, it closes the remaining sockets at once and still waits
// for their handlers (each bounded by StoreTimeout), so that none of them
// uses the store after Shutdown returns; the error then says so.
func (r *Router) Shutdown(ctx context.Context) error {
	r.closing.Store(true)
	r.mu.RLock()
	conns := make([]*Conn, 0, len(r.conns))
	for _, c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.RUnlock()
	for _, c := range conns {
		c.close(websocket.CloseGoingAway, "server shutting down", nil)
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range conns {
			_ = c.s.WebsocketConnection().Close() // force what did not close in time
		}
		<-done
	}
	rctx := context.WithoutCancel(ctx)
	sctx, cancel := context.WithTimeout(rctx, r.cfg.StoreTimeout)
	removed, rerr := r.store.RemoveNode(sctx, r.node)
	cancel()
	r.usersOffline(removed) // Events hook
	r.sendFinalLeaves(rctx, removed)
	return errors.Join(err, rerr)
}

// sendFinalLeaves sends the leave events owed for the bindings that
// Shutdown removed itself (their handlers could not: the store failed
// meanwhile). Publishing needs this node's heartbeat, which RemoveNode
// deleted, and a store known to be reachable, which it just was: the
// heartbeat is written for the time of the events, then removed again.
func (r *Router) sendFinalLeaves(ctx context.Context, removed []session.Removed) {
	if len(removed) == 0 {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	_, err := r.store.Heartbeat(hctx, r.node, r.cfg.HeartbeatTTL)
	cancel()
	if err != nil {
		r.log.Warn("leave events of the last connections not sent: store unreachable", "bindings", len(removed))
		return
	}
	r.storeOK.Store(true) // the node has no binding left, as the store says
	r.sendLeaves(ctx, removed)
	hctx, cancel = context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if _, err := r.store.RemoveNode(hctx, r.node); err != nil {
		r.log.Warn("removing the heartbeat at shutdown", "err", err) // it expires by itself
	}
}
