package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// load is the message phase shared by direct and broadcast: senders stamp
// each message with its intended send time (ns since epoch), receivers
// record now - ts0. Only messages whose ts0 falls in [warmEnd, measEnd)
// are counted, on both sides, so sent and received compare exactly.
type load struct {
	r       *runner
	epoch   time.Time
	warmEnd int64
	measEnd int64
	hist    *Histogram

	sent    atomic.Int64 // measured messages written
	recv    atomic.Int64 // measured messages received (each delivery)
	recvAll atomic.Int64
	frames  atomic.Int64 // every frame received, events included
	endAt   atomic.Int64 // when the last sender stopped (ns since epoch)

	stop     chan struct{}
	stopOnce sync.Once
	closing  atomic.Bool // set before closing the sockets: read errors are expected
}

func (r *runner) newLoad() *load {
	meas := r.cfg.Duration
	if meas <= 0 { // count-bounded only: the hard cap bounds it
		meas = r.cfg.MaxTime - r.cfg.Warmup - r.cfg.Drain - 5*time.Second
	}
	l := &load{
		r:       r,
		epoch:   time.Now(),
		warmEnd: int64(r.cfg.Warmup),
		measEnd: int64(r.cfg.Warmup + meas),
		hist:    NewHistogram(),
		stop:    make(chan struct{}),
	}
	return l
}

func (l *load) now() int64 { return int64(time.Since(l.epoch)) }

// settle waits, before the load starts, until the connections have received
// no frame for 300 ms (at most 15 s): the join events that a server sends
// while everyone comes online must not be measured as message latency. It
// then restarts the epoch and returns the time it waited.
func (l *load) settle(ctx context.Context) time.Duration {
	t0 := time.Now()
	last, quietSince := l.frames.Load(), time.Now()
	waitFor(ctx, 15*time.Second, func() bool {
		if n := l.frames.Load(); n != last {
			last, quietSince = n, time.Now()
		}
		return time.Since(quietSince) >= 300*time.Millisecond
	})
	l.epoch = time.Now()
	return time.Since(t0)
}

func (l *load) halt() { l.stopOnce.Do(func() { close(l.stop) }) }

// admit counts a message about to be sent at intended time t and reports
// whether it may be sent (false once the run's bounds are reached).
func (l *load) admit(t int64) bool {
	if t >= l.measEnd {
		return false
	}
	select {
	case <-l.stop:
		return false
	default:
	}
	if t < l.warmEnd {
		return true
	}
	n := l.sent.Add(1)
	if c := l.r.cfg.Count; c > 0 && n > c {
		l.sent.Add(-1)
		l.halt()
		return false
	}
	return true
}

func (l *load) senderDone() {
	t := l.now()
	for {
		e := l.endAt.Load()
		if t <= e || l.endAt.CompareAndSwap(e, t) {
			return
		}
	}
}

// tokenTimeout is how long a closed-loop sender waits for a token before it
// takes the message as lost and sends the next one anyway.
const tokenTimeout = time.Second

// closedLoop sends to `to` whenever it holds one of tok's tokens; the
// receiver (or an error frame) gives the token back. Messages for all the
// tokens at hand go out in one write syscall, so that the client spends
// less CPU than the server it measures.
func (l *load) closedLoop(ctx context.Context, c *Conn, to string, tok chan struct{}) {
	defer l.senderDone()
	buf := make([]byte, 0, l.r.cfg.Size+64)
	timeout := time.NewTimer(tokenTimeout)
	defer timeout.Stop()
	for {
		timeout.Reset(tokenTimeout)
		select {
		case <-tok:
		case <-timeout.C:
			l.r.cerrs.add("window_timeout") // a message (or its token) was lost
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		}
		c.hold()
		more := true
		for n := 1; more; n++ {
			t := l.now()
			if !l.admit(t) {
				_ = c.flush()
				return
			}
			buf = appendMessage(buf[:0], to, t, l.r.cfg.Size)
			if err := c.write(buf); err != nil {
				l.r.cerrs.add("write")
				return
			}
			select {
			case <-tok:
			default:
				more = false
			}
		}
		if err := c.flush(); err != nil {
			l.r.cerrs.add("write")
			return
		}
	}
}

// openLoop sends to `to` (everyone in the action when empty) at rate
// msgs/s on a fixed schedule with a random phase; a late send keeps its
// intended time, so stalls show in the latency (no coordinated omission).
func (l *load) openLoop(ctx context.Context, c *Conn, to string, rate float64) {
	defer l.senderDone()
	interval := float64(time.Second) / rate
	phase := rand.Float64() * interval
	buf := make([]byte, 0, l.r.cfg.Size+64)
	for k := 0; ; k++ {
		t := int64(phase + float64(k)*interval)
		if t >= l.measEnd {
			return
		}
		if !sleepUntil(ctx, l.stop, l.epoch.Add(time.Duration(t))) || !l.admit(t) {
			return
		}
		buf = appendMessage(buf[:0], to, t, l.r.cfg.Size)
		if err := c.write(buf); err != nil {
			l.r.cerrs.add("write")
			return
		}
	}
}

// frame handles one received frame; onMsg runs for benchmark messages,
// onErr for error frames.
func (l *load) frame(b []byte, onMsg func(), onErr func(code string)) {
	l.frames.Add(1)
	kind, ts, code := classify(b)
	switch kind {
	case frameMessage:
		now := l.now()
		l.recvAll.Add(1)
		if ts >= l.warmEnd && ts < l.measEnd {
			l.hist.Record(now - ts) // before recv: finish waits on recv
			l.recv.Add(1)
		}
		if onMsg != nil {
			onMsg()
		}
	case frameError:
		l.r.errs.add(code)
		if onErr != nil {
			onErr(code)
		}
	}
}

func (l *load) reader(wg *sync.WaitGroup, c *Conn, onMsg func(), onErr func(code string)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := c.readLoop(func(b []byte) { l.frame(b, onMsg, onErr) })
		if err != nil && !l.closing.Load() {
			l.r.cerrs.add("read")
		}
	}()
}

func release(tok chan struct{}) {
	select {
	case tok <- struct{}{}:
	default:
	}
}

// run waits for the senders, measures the server over the measured phase,
// drains, and fills res. fanout is the number of deliveries per message.
func (l *load) finish(ctx context.Context, senders *sync.WaitGroup, fanout int64, res *Result) {
	stopProgress := l.r.progress(func() string {
		t := time.Duration(l.now()).Round(100 * time.Millisecond)
		return fmt.Sprintf("t=%v sent=%d received=%d server_errors=%d", t, l.sent.Load(), l.recv.Load(), l.r.errs.total())
	})
	defer stopProgress()
	// The measured phase ends by itself; make blocked senders notice.
	endTimer := time.AfterFunc(time.Until(l.epoch.Add(time.Duration(l.measEnd))), l.halt)
	defer endTimer.Stop()
	go func() {
		select {
		case <-ctx.Done():
			l.halt()
		case <-l.stop:
		}
	}()
	var samp *sampler
	if sleepUntil(ctx, l.stop, l.epoch.Add(time.Duration(l.warmEnd))) {
		samp = l.r.startSampler()
	}
	senders.Wait()
	l.halt()
	if samp != nil {
		samp.stop(res)
	}
	sent := l.sent.Load()
	waitFor(ctx, l.r.cfg.Drain, func() bool { return l.recv.Load() >= sent*fanout })

	// The measured window ends when the senders stop, at the latest at
	// measEnd (an open-loop sender that fell behind may finish later).
	res.Seconds = time.Duration(min(l.endAt.Load(), l.measEnd) - l.warmEnd).Seconds()
	if res.Seconds <= 0 {
		res.Seconds = 0
	}
	res.Sent = sent
	res.Expected = sent * fanout
	res.Received = l.recv.Load()
	res.Lost = res.Expected - res.Received
	if res.Expected > 0 {
		res.DeliveredPct = 100 * float64(res.Received) / float64(res.Expected)
	}
	if res.Seconds > 0 {
		res.SendRate = float64(sent) / res.Seconds
		res.Throughput = float64(res.Received) / res.Seconds
	}
	s := l.hist.Summary()
	res.Latency = &s
}

func (r *runner) direct(ctx context.Context, res *Result) error {
	cfg := r.cfg
	p := cfg.Pairs
	url2 := cfg.URL2
	if url2 == "" {
		url2 = cfg.URL
	}
	// b_i (receivers, on -url2) first, then a_i (on -url): conns[i] and
	// conns[p+i] are a pair.
	connHist := NewHistogram()
	t0 := time.Now()
	conns, err := r.connectMany(ctx, 2*p, func(i int) (string, string, string) {
		if i < p {
			return url2, r.action(i), r.user("b", i)
		}
		return cfg.URL, r.action(i - p), r.user("a", i-p)
	}, connHist)
	defer r.closeAll(conns)
	res.Conns = 2 * p
	fillConnect(res, countLive(conns), time.Since(t0), connHist)
	if err != nil {
		return err
	}
	if n := countLive(conns); n != 2*p {
		return fmt.Errorf("only %d of %d connections came up: %v", n, 2*p, r.cerrs.snapshot())
	}
	peer := func(i int) int { return (i + p) % (2 * p) }

	l := r.newLoad()
	toks := make([]chan struct{}, 2*p)
	if cfg.Rate == 0 {
		res.Mode = fmt.Sprintf("closed-loop, window %d per sender", cfg.Window)
		for i := range toks {
			toks[i] = make(chan struct{}, cfg.Window)
			for j := 0; j < cfg.Window; j++ {
				toks[i] <- struct{}{}
			}
		}
	} else {
		res.Mode = "open-loop"
		res.TargetRate = cfg.Rate
	}
	var readers, senders sync.WaitGroup
	for i, c := range conns {
		if cfg.Rate == 0 {
			mine, theirs := toks[i], toks[peer(i)]
			l.reader(&readers, c, func() { release(theirs) }, func(code string) {
				// Refused messages give their token back; after
				// unavailable the message may still arrive locally.
				if code != "unavailable" {
					release(mine)
				}
			})
		} else {
			l.reader(&readers, c, nil, nil)
		}
	}
	res.SettleSeconds = l.settle(ctx).Seconds()
	for i, c := range conns {
		senders.Add(1)
		to := conns[peer(i)].User
		go func(i int, c *Conn) {
			defer senders.Done()
			if cfg.Rate == 0 {
				l.closedLoop(ctx, c, to, toks[i])
			} else {
				l.openLoop(ctx, c, to, cfg.Rate/float64(2*p))
			}
		}(i, c)
	}
	l.finish(ctx, &senders, 1, res)
	l.closing.Store(true)
	r.closeAll(conns)
	readers.Wait()
	return nil
}

func (r *runner) broadcast(ctx context.Context, res *Result) error {
	cfg := r.cfg
	s := cfg.Subs
	url2 := cfg.URL2
	if url2 == "" {
		url2 = cfg.URL
	}
	// Subscribers (on -url2) first, the publisher (on -url) last, all in
	// one action.
	connHist := NewHistogram()
	t0 := time.Now()
	action := r.action(0)
	conns, err := r.connectMany(ctx, s+1, func(i int) (string, string, string) {
		if i < s {
			return url2, action, r.user("s", i)
		}
		return cfg.URL, action, r.user("pub", 0)
	}, connHist)
	defer r.closeAll(conns)
	res.Conns = s + 1
	fillConnect(res, countLive(conns), time.Since(t0), connHist)
	if err != nil {
		return err
	}
	if n := countLive(conns); n != s+1 {
		return fmt.Errorf("only %d of %d connections came up: %v", n, s+1, r.cerrs.snapshot())
	}
	res.Mode = "open-loop, 1 publisher"
	res.TargetRate = cfg.Rate
	l := r.newLoad()
	var readers, senders sync.WaitGroup
	for _, c := range conns {
		l.reader(&readers, c, nil, nil)
	}
	res.SettleSeconds = l.settle(ctx).Seconds()
	senders.Add(1)
	go func() {
		defer senders.Done()
		l.openLoop(ctx, conns[s], "", cfg.Rate)
	}()
	l.finish(ctx, &senders, int64(s), res)
	l.closing.Store(true)
	r.closeAll(conns)
	readers.Wait()
	return nil
}

func fillConnect(res *Result, live int, d time.Duration, h *Histogram) {
	res.ConnectSeconds = d.Seconds()
	if d > 0 {
		res.ConnectRate = float64(live) / d.Seconds()
	}
	if h != nil && h.Count() > 0 {
		s := h.Summary()
		res.ConnectLatency = &s
	}
}
