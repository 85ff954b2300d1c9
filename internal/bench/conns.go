package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// urlFor spreads connections over -url and -url2 (every other one).
func (r *runner) urlFor(i int) string {
	if r.cfg.URL2 != "" && i%2 == 1 {
		return r.cfg.URL2
	}
	return r.cfg.URL
}

// drainReaders starts a reader per connection that only counts error
// frames; read errors after closing is set are expected.
func (r *runner) drainReaders(wg *sync.WaitGroup, conns []*Conn, closing *atomic.Bool) {
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func(c *Conn) {
			defer wg.Done()
			err := c.readLoop(func(b []byte) {
				if kind, _, code := classify(b); kind == frameError {
					r.errs.add(code)
				}
			})
			if err != nil && !closing.Load() {
				r.cerrs.add("read")
			}
		}(c)
	}
}

// gauge reads switchboard_connections from -metrics; ok is false without
// -metrics or on failure.
func (r *runner) gauge(ctx context.Context) (float64, bool) {
	if r.cfg.MetricsURL == "" {
		return 0, false
	}
	m, err := readMetrics(ctx, r.cfg.MetricsURL, "switchboard_connections")
	if err != nil {
		r.cerrs.add("metrics")
		return 0, false
	}
	v, ok := m["switchboard_connections"]
	return v, ok
}

// checkGauge waits up to 10 s for switchboard_connections to equal want.
func (r *runner) checkGauge(ctx context.Context, res *Result, name string, want int64) {
	if r.cfg.MetricsURL == "" {
		return
	}
	var got float64
	ok := waitFor(ctx, 10*time.Second, func() bool {
		v, ok := r.gauge(ctx)
		got = v
		return ok && int64(v) == want
	})
	res.Checks = append(res.Checks, Check{Name: name, Want: want, Got: int64(got), OK: ok, Detail: "switchboard_connections"})
}

func (r *runner) idle(ctx context.Context, res *Result) error {
	cfg := r.cfg
	n := cfg.Conns
	before, havePID := r.serverSample()
	g0, haveGauge := r.gauge(ctx)
	gr0 := r.goroutines(ctx)

	connHist := NewHistogram()
	samp := r.startSampler()
	t0 := time.Now()
	conns, err := r.connectMany(ctx, n, func(i int) (string, string, string) {
		return r.urlFor(i), r.action(i), r.user("u", i)
	}, connHist)
	d := time.Since(t0)
	samp.stop(res)
	var closing atomic.Bool
	var readers sync.WaitGroup
	defer func() {
		closing.Store(true)
		r.closeAll(conns)
		readers.Wait()
	}()
	live := countLive(conns)
	res.Conns = n
	res.Mode = fmt.Sprintf("%d connected, %d failed", live, n-live)
	fillConnect(res, live, d, connHist)
	if err != nil {
		return err
	}
	if live == 0 {
		return errNoConns
	}
	r.drainReaders(&readers, conns, &closing)
	if haveGauge {
		r.checkGauge(ctx, res, "connections_up", int64(g0)+int64(live))
	}

	holdEnd := time.Now().Add(cfg.Duration)
	stop := r.progress(func() string {
		return fmt.Sprintf("holding %d connections, %v left", live, time.Until(holdEnd).Round(time.Second))
	})
	sleepUntil(ctx, nil, holdEnd)
	stop()
	res.Seconds = cfg.Duration.Seconds()

	if havePID {
		after, _ := r.serverSample()
		res.Server = mergeServer(res.Server, &ServerStats{
			RSSBeforeKB:     before.RSSKB,
			RSSAfterKB:      after.RSSKB,
			RSSPerConnKB:    float64(after.RSSKB-before.RSSKB) / float64(live),
			ThreadsBefore:   before.Threads,
			ThreadsAfter:    after.Threads,
			GoroutinesStart: gr0,
			GoroutinesAfter: r.goroutines(ctx),
		})
	}
	closing.Store(true)
	r.closeAll(conns)
	readers.Wait()
	conns = nil
	if haveGauge {
		r.checkGauge(ctx, res, "connections_closed", int64(g0))
	}
	if havePID {
		end, _ := r.serverSample()
		res.Server.RSSEndKB = end.RSSKB
	}
	return ctx.Err()
}

// mergeServer keeps the CPU share measured earlier.
func mergeServer(old, s *ServerStats) *ServerStats {
	if old != nil {
		s.CPUPct = old.CPUPct
	}
	return s
}

func (r *runner) churn(ctx context.Context, res *Result) error {
	cfg := r.cfg
	g0, haveGauge := r.gauge(ctx)
	var store *storeCounter
	if cfg.Redis != "" {
		var err error
		if store, err = newStoreCounter(cfg.Redis, cfg.RedisPrefix); err != nil {
			return err
		}
		defer store.Close()
		if _, _, err = store.count(ctx, "."+r.tag, nil); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}

	// Steady connections.
	connHist := NewHistogram()
	t0 := time.Now()
	steady, err := r.connectMany(ctx, cfg.Conns, func(i int) (string, string, string) {
		return r.urlFor(i), r.action(i), r.user("st", i)
	}, connHist)
	var closing atomic.Bool
	var readers sync.WaitGroup
	defer func() {
		closing.Store(true)
		r.closeAll(steady)
		readers.Wait()
	}()
	live := countLive(steady)
	res.Conns = cfg.Conns
	fillConnect(res, live, time.Since(t0), connHist)
	if err != nil {
		return err
	}
	r.drainReaders(&readers, steady, &closing)
	before, havePID := r.serverSample()
	grBefore := r.goroutines(ctx)

	// Churn: open-loop connects at ChurnRate; each lives ChurnLife.
	var connects, disconnects, failed atomic.Int64
	cs := &ChurnStats{TargetRate: cfg.ChurnRate}
	res.Churn = cs
	res.Mode = fmt.Sprintf("%d steady + %.0f connects/s, life %v, %.0f%% abrupt", live, cfg.ChurnRate, cfg.ChurnLife, 100*cfg.Abrupt)
	epoch := time.Now()
	interval := float64(time.Second) / cfg.ChurnRate
	sem := make(chan struct{}, cfg.DialConcurrency)
	stopProgress := r.progress(func() string {
		return fmt.Sprintf("churn t=%v connects=%d disconnects=%d failed=%d", time.Since(epoch).Round(time.Second), connects.Load(), disconnects.Load(), failed.Load())
	})
	samp := r.startSampler()
	var churners sync.WaitGroup
	for k := 0; ; k++ {
		at := time.Duration(float64(k) * interval)
		if at >= cfg.Duration || !sleepUntil(ctx, nil, epoch.Add(at)) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		churners.Add(1)
		go func(k int) {
			defer churners.Done()
			c, err := r.cl.connect(ctx, r.urlFor(k), r.action(k), r.user("ch", k))
			<-sem
			if err != nil {
				failed.Add(1)
				r.cerrs.add(errKind(err))
				return
			}
			connects.Add(1)
			var rd sync.WaitGroup
			var gone atomic.Bool
			r.drainReaders(&rd, []*Conn{c}, &gone)
			sleepUntil(ctx, nil, time.Now().Add(cfg.ChurnLife))
			gone.Store(true)
			c.Close(float64(k%100) < cfg.Abrupt*100)
			rd.Wait()
			disconnects.Add(1)
		}(k)
	}
	churnTime := time.Since(epoch)
	churners.Wait()
	samp.stop(res)
	stopProgress()
	res.Seconds = churnTime.Seconds()
	cs.Connects, cs.Disconnects, cs.Failed = connects.Load(), disconnects.Load(), failed.Load()
	cs.ConnectRate = float64(cs.Connects) / churnTime.Seconds()
	cs.DisconnectRate = float64(cs.Disconnects) / churnTime.Seconds()

	// Afterwards the store must hold exactly the steady connections.
	if haveGauge {
		r.checkGauge(ctx, res, "connections_after_churn", int64(g0)+int64(live))
	}
	if store != nil {
		r.checkStore(ctx, res, store, "redis_bindings_after_churn", int64(live))
	}
	if havePID {
		after, _ := r.serverSample()
		res.Server = mergeServer(res.Server, &ServerStats{
			RSSBeforeKB:     before.RSSKB,
			RSSAfterKB:      after.RSSKB,
			ThreadsBefore:   before.Threads,
			ThreadsAfter:    after.Threads,
			GoroutinesStart: grBefore,
			GoroutinesAfter: r.goroutines(ctx),
		})
		if cfg.Settle > 0 {
			res.Server.RSSSettledKB, res.Server.SettleSeconds = r.settle(ctx, before.RSSKB)
		}
	}
	closing.Store(true)
	r.closeAll(steady)
	readers.Wait()
	steady = nil
	if haveGauge {
		r.checkGauge(ctx, res, "connections_after_close", int64(g0))
	}
	if store != nil {
		r.checkStore(ctx, res, store, "redis_bindings_after_close", 0)
	}
	if havePID {
		end, _ := r.serverSample()
		res.Server.RSSEndKB = end.RSSKB
	}
	return ctx.Err()
}

// settle samples the server's RSS every 5 s, for at most cfg.Settle, until
// it is within 10 % of baseline; it returns the last sample and the time
// taken. A Go server keeps freed heap until a collection (at least every 2
// minutes) lets the scavenger return it: this tells retained from leaked.
func (r *runner) settle(ctx context.Context, baselineKB int64) (int64, float64) {
	start := time.Now()
	deadline := start.Add(r.cfg.Settle)
	var rss int64
	stop := r.progress(func() string {
		return fmt.Sprintf("settling: server RSS %d KB, baseline %d KB, %v left", rss, baselineKB, time.Until(deadline).Round(time.Second))
	})
	defer stop()
	for {
		s, _ := r.serverSample()
		rss = s.RSSKB
		if rss <= baselineKB*11/10 || time.Now().After(deadline) {
			return rss, time.Since(start).Seconds()
		}
		if !sleepUntil(ctx, nil, minTime(deadline, time.Now().Add(5*time.Second))) {
			return rss, time.Since(start).Seconds()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkStore waits up to 10 s for the store to hold exactly want bindings
// of this run: {prefix}conn:* keys whose user is one of this run's, and as
// many fields in this run's action hashes.
func (r *runner) checkStore(ctx context.Context, res *Result, s *storeCounter, name string, want int64) {
	var gotConns, gotFields int64
	var lastErr error
	ok := waitFor(ctx, 10*time.Second, func() bool {
		gotConns, gotFields, lastErr = s.count(ctx, "."+r.tag, r.actions())
		return lastErr == nil && gotConns == want && gotFields == want
	})
	detail := fmt.Sprintf("%sconn:* keys of this run; action hash fields got %d", s.prefix, gotFields)
	if lastErr != nil {
		detail += "; error: " + lastErr.Error()
	}
	res.Checks = append(res.Checks, Check{Name: name, Want: want, Got: gotConns, OK: ok, Detail: detail})
}
