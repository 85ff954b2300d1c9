// Package webhook sends Switchboard's events (user.online, user.offline,
// message.undelivered) to the application's backend as Standard Webhooks
// 1.0: signed, retried with backoff, in order per user and action, at least
// once. Events wait in a Queue (memory, or Redis shared by every node).
package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/session"
)

// Config configures a Sender. The zero value of every field but URL and Key
// means its documented default.
type Config struct {
	// URL receives the events (WEBHOOK_URL). Required.
	URL string
	// Key signs them: the key of WEBHOOK_SECRET, see ParseSecret. Required.
	Key []byte
	// Queue holds the events. Default: NewMemoryQueue(DefaultQueueLimit).
	Queue Queue
	// Timeout bounds one attempt (WEBHOOK_TIMEOUT). Default 5s.
	Timeout time.Duration
	// RetryFor is how long an event is retried, counted from its first
	// attempt, before it is dropped (WEBHOOK_RETRY_FOR). Default 10m.
	RetryFor time.Duration
	// OfflineDelay is how long a user.offline waits for the user to come
	// back (WEBHOOK_OFFLINE_DELAY); a return within it cancels both events.
	// Default 5s.
	OfflineDelay time.Duration
	// RetryMin is the first retry's wait, RetryMax the longest; waits double
	// in between, with jitter, and never shrink. Defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
	// Concurrency bounds the requests in flight (events of different users
	// go out in parallel up to it). Default 32.
	Concurrency int
	// Buffer is how many events may wait for the queue (a Redis round trip)
	// without blocking the caller; beyond it they are dropped and counted.
	// Default 10000.
	Buffer int
	// ReadAhead bounds the events this node holds in memory while sending.
	// Default 10000.
	ReadAhead int
	// PollInterval is how often the queue is read for events queued by other
	// nodes and for due user.offline events. Default 100ms.
	PollInterval time.Duration
	// Client sends the requests. Default: a client without redirects.
	Client *http.Client
	// Registerer receives the metrics. Default: none.
	Registerer prometheus.Registerer
	// Logger receives logs: one line per change of the receiver's state
	// (failing, recovered), never one per event. Default: discard.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Queue == nil {
		c.Queue = NewMemoryQueue(0)
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.RetryFor <= 0 {
		c.RetryFor = 10 * time.Minute
	}
	if c.OfflineDelay <= 0 {
		c.OfflineDelay = 5 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = time.Minute
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Buffer <= 0 {
		c.Buffer = 10000
	}
	if c.ReadAhead <= 0 {
		c.ReadAhead = 10000
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.Client == nil {
		c.Client = NewClient()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// NewClient returns the HTTP client a Sender uses by default: it follows
// no redirect (a 3xx is a failed attempt) and keeps connections to the
// receiver alive.
func NewClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone() //nolint:forcetypeassert // net/http's documented type
	t.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Sender turns hook calls into queued events and sends the queue's events
// to the receiver. Its hook methods never block; it is safe for concurrent
// use.
type Sender struct {
	cfg     Config
	q       Queue
	log     *slog.Logger
	metrics *metrics

	ops  chan Op       // hook calls waiting to reach the queue
	wake chan struct{} // this node queued something: read now

	mu    sync.Mutex
	lines map[string][]Event // ordering key → events held, in order; the first is being sent
	held  int

	sem     chan struct{} // requests in flight
	failing atomic.Bool   // the receiver's state, logged when it changes
	queueOK atomic.Bool
	wg      sync.WaitGroup // one per line being sent
}

// New returns a Sender. It does no I/O and starts no goroutine; call Run.
// Hook calls made before Run wait in the buffer.
func New(cfg Config) (*Sender, error) {
	if cfg.URL == "" {
		return nil, errors.New("webhook: Config.URL is required")
	}
	if len(cfg.Key) == 0 {
		return nil, errors.New("webhook: Config.Key is required")
	}
	cfg.setDefaults()
	s := &Sender{
		cfg:     cfg,
		q:       cfg.Queue,
		log:     cfg.Logger,
		metrics: newMetrics(cfg.Registerer),
		ops:     make(chan Op, cfg.Buffer),
		wake:    make(chan struct{}, 1),
		lines:   make(map[string][]Event),
		sem:     make(chan struct{}, cfg.Concurrency),
	}
	s.queueOK.Store(true)
	return s, nil
}

// UserOnline reports that b is its user's first connection in its action,
// cluster-wide. It does not block.
func (s *Sender) UserOnline(b session.Binding) {
	s.enqueue(Op{Kind: OpOnline, Event: OnlineEvent(b, time.Now())})
}

// UserOffline reports that user's last connection in action has closed.
// The user.offline is sent after OfflineDelay unless the user comes back
// meanwhile (on any node). It does not block.
func (s *Sender) UserOffline(user, action string) {
	now := time.Now()
	s.enqueue(Op{Kind: OpSchedule, Event: OfflineEvent(user, action, now), Due: now.Add(s.cfg.OfflineDelay)})
}

// Undelivered reports that msg, a direct message to user `to` in action,
// reached no connection. It does not block.
func (s *Sender) Undelivered(msg []byte, to, action string) {
	ev, err := UndeliveredEvent(msg, to, action, time.Now())
	if err != nil {
		s.log.Error("webhook: message.undelivered not emitted", "err", err) // a stamped message is valid JSON: a bug
		return
	}
	s.enqueue(Op{Kind: OpAdd, Event: ev})
}

func (s *Sender) enqueue(o Op) {
	select {
	case s.ops <- o:
	default:
		s.metrics.dropped.WithLabelValues(dropBufferFull).Inc()
	}
}

// Run moves hook calls into the queue and sends the queue's events until
// ctx ends. Then it writes what the hooks left in the buffer to the queue
// (for at most drainTimeout), releases this node's share of the queue, and
// returns once every request in flight has ended. Unacknowledged events
// stay in the queue (with Redis, another node sends them).
func (s *Sender) Run(ctx context.Context) error {
	var loops sync.WaitGroup
	loops.Add(2)
	go func() { defer loops.Done(); s.emit(ctx) }()
	go func() { defer loops.Done(); s.stats(ctx) }()
	s.read(ctx)
	loops.Wait()
	s.wg.Wait()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	return s.q.Release(rctx)
}

// drainTimeout bounds writing the buffered hook calls at shutdown.
const drainTimeout = 5 * time.Second

// maxBatch is the most hook calls written to the queue in one round trip.
const maxBatch = 256

// emit writes hook calls to the queue in order, in batches of what has
// accumulated meanwhile. When the queue cannot be reached it retries the
// same batch, so later calls wait behind it (and the buffer fills; beyond it
// calls are dropped and counted).
func (s *Sender) emit(ctx context.Context) {
	batch := make([]Op, 0, maxBatch)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-ctx.Done():
			s.drain(ctx, nil)
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		for !s.apply(ctx, batch) {
			select {
			case <-ctx.Done():
				s.drain(ctx, batch)
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// drain writes pending and then the buffered calls at shutdown, within
// drainTimeout.
func (s *Sender) drain(ctx context.Context, pending []Op) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	pending = append([]Op(nil), pending...)
	for {
		select {
		case o := <-s.ops:
			pending = append(pending, o)
			continue
		default:
		}
		break
	}
	for len(pending) > 0 {
		n := min(len(pending), maxBatch)
		if dctx.Err() != nil || !s.apply(dctx, pending[:n]) {
			s.metrics.dropped.WithLabelValues(dropUnavailable).Add(float64(len(pending)))
			s.log.Error("webhook events lost at shutdown: queue unreachable", "events", len(pending))
			return
		}
		pending = pending[n:]
	}
}

// apply writes a batch of hook calls to the queue and reports whether it
// got there.
func (s *Sender) apply(ctx context.Context, batch []Op) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	res, err := s.q.Push(ctx, batch)
	if err != nil {
		if s.queueOK.Swap(false) {
			s.log.Error("webhook queue unreachable; events wait in memory", "err", err)
		}
		return false
	}
	if !s.queueOK.Swap(true) {
		s.log.Info("webhook queue reachable again")
	}
	queued := false
	for i, r := range res {
		if r.Dropped > 0 {
			s.metrics.dropped.WithLabelValues(dropQueueFull).Add(float64(r.Dropped))
		}
		switch {
		case r.Queued:
			queued = true
			s.metrics.emitted.WithLabelValues(batch[i].Event.Type).Inc()
		case batch[i].Kind == OpOnline:
			s.metrics.debounced.Inc()
		}
	}
	if queued {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// stats refreshes the queue gauges every statsInterval.
func (s *Sender) stats(ctx context.Context) {
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		n, oldest, err := s.q.Stats(qctx)
		cancel()
		if err == nil {
			s.metrics.queueLen.Set(float64(n))
			age := 0.0
			if !oldest.IsZero() {
				age = max(0, time.Since(oldest).Seconds())
			}
			s.metrics.oldest.Set(age)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statsInterval is how often the queue gauges are refreshed.
const statsInterval = 2 * time.Second

// read hands queued events to one sending goroutine per user and action,
// holding at most ReadAhead events, until ctx ends.
func (s *Sender) read(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.mu.Lock()
		room := s.cfg.ReadAhead - s.held
		s.mu.Unlock()
		if room > 0 {
			qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			evs, dropped, err := s.q.Read(qctx, room)
			cancel()
			if dropped > 0 {
				s.metrics.dropped.WithLabelValues(dropQueueFull).Add(float64(dropped))
			}
			if err == nil {
				for _, ev := range evs {
					if ev.Type == TypeUserOffline {
						s.metrics.emitted.WithLabelValues(TypeUserOffline).Inc()
					}
					s.dispatch(ctx, ev)
				}
				if len(evs) >= room {
					continue // more may be waiting
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// dispatch appends ev to its line, starting the line's goroutine if idle.
func (s *Sender) dispatch(ctx context.Context, ev Event) {
	k := ev.key()
	s.mu.Lock()
	line, busy := s.lines[k]
	s.lines[k] = append(line, ev)
	s.held++
	s.mu.Unlock()
	if !busy {
		s.wg.Add(1)
		go s.work(ctx, k)
	}
}

// work sends the events of one line in order, each until acknowledged or
// dropped, then ends.
func (s *Sender) work(ctx context.Context, k string) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		line := s.lines[k]
		if len(line) == 0 {
			delete(s.lines, k)
			s.mu.Unlock()
			return
		}
		ev := line[0]
		s.mu.Unlock()
		if !s.send(ctx, ev) {
			return // stopping: the line stays queued
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		err := s.q.Ack(actx, ev)
		cancel()
		if err != nil {
			s.log.Debug("webhook: ack failed; the event may be sent again", "err", err)
		}
		s.mu.Lock()
		line = s.lines[k]
		line[0] = Event{}
		s.lines[k] = line[1:]
		s.held--
		s.mu.Unlock()
	}
}

// send delivers ev, retrying with backoff. It returns true once ev was
// acknowledged or dropped, false when ctx ended first.
func (s *Sender) send(ctx context.Context, ev Event) bool {
	var first time.Time
	var wait time.Duration
	for attempt := 0; ; attempt++ {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		if first.IsZero() {
			first = time.Now()
		}
		status, err := s.post(ctx, ev)
		<-s.sem
		if ctx.Err() != nil {
			return false
		}
		if err == nil && status/100 == 2 {
			s.metrics.delivered.Inc()
			s.metrics.latency.Observe(time.Since(ev.At).Seconds())
			if s.failing.Swap(false) {
				s.log.Info("webhook receiver recovered", "url", redact(s.cfg.URL))
			}
			return true
		}
		if !s.failing.Swap(true) {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // without the URL
			}
			s.log.Warn("webhook receiver failing; retrying with backoff", "url", redact(s.cfg.URL), "status", status, "err", err)
		}
		wait = backoff(attempt, wait, s.cfg.RetryMin, s.cfg.RetryMax)
		if time.Since(first)+wait > s.cfg.RetryFor {
			s.metrics.dropped.WithLabelValues(dropExpired).Inc()
			s.log.Debug("webhook event dropped after retrying", "id", ev.ID, "type", ev.Type, "attempts", attempt+1)
			return true
		}
		s.metrics.retried.Inc()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// redact returns raw without credentials and query, which may hold secrets.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// backoff returns the wait before retry number attempt+1: min doubled per
// attempt, ±10 % jitter, capped at max, never shorter than prev.
func backoff(attempt int, prev, lo, hi time.Duration) time.Duration {
	d := hi
	if attempt < 30 {
		d = min(hi, lo<<attempt)
	}
	d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
	return min(hi, max(d, prev))
}

// post makes one attempt and returns the answer's status.
func (s *Sender) post(ctx context.Context, ev Event) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return Post(ctx, s.cfg.Client, s.cfg.URL, s.cfg.Key, ev, io.Discard)
}

// Post sends ev once to url, signed with key, and returns the answer's
// status, copying at most 64 KiB of the answer's body to w.
func Post(ctx context.Context, client *http.Client, url string, key []byte, ev Event, w io.Writer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(ev.Body))
	if err != nil {
		return 0, err
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Switchboard-Webhooks/1")
	req.Header.Set("webhook-id", ev.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(key, ev.ID, now, ev.Body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 64<<10)) // the status alone acknowledges
	return resp.StatusCode, nil
}
