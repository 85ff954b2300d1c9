package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Run executes cfg's scenario and writes its report to stdout; progress
// lines go to stderr. It returns when the run is over, at the latest after
// cfg.MaxTime (every connection it opened is closed by then).
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxTime)
	defer cancel()
	r := &runner{
		cfg:    &cfg,
		cl:     newClient(&cfg),
		stderr: stderr,
		tag:    strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36),
		errs:   newCounts(),
		cerrs:  newCounts(),
	}
	res := &Result{Scenario: cfg.Scenario, Label: cfg.Label, URL: cfg.URL, URL2: cfg.URL2}
	if cfg.QuietWait > 0 {
		res.QuietWaited, res.BusyBefore = r.waitQuiet(ctx)
	}
	var err error
	switch cfg.Scenario {
	case ScenarioIdle:
		err = r.idle(ctx, res)
	case ScenarioDirect:
		err = r.direct(ctx, res)
	case ScenarioBroadcast:
		err = r.broadcast(ctx, res)
	case ScenarioChurn:
		err = r.churn(ctx, res)
	}
	res.ServerErrors = r.errs.snapshot()
	res.ClientErrors = r.cerrs.snapshot()
	if werr := res.Write(stdout, cfg.JSON); err == nil {
		err = werr
	}
	return res, err
}

type runner struct {
	cfg    *Config
	cl     *client
	stderr io.Writer
	tag    string  // distinguishes this run's user ids and actions
	errs   *counts // error frames from the server, by code
	cerrs  *counts // client-side failures, by kind
}

// counts is a mutex-guarded map of counters; used for errors, which are rare.
type counts struct {
	mu sync.Mutex
	m  map[string]int64
}

func newCounts() *counts { return &counts{m: make(map[string]int64)} }

func (c *counts) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *counts) total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, v := range c.m {
		n += v
	}
	return n
}

func (c *counts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (r *runner) action(i int) string {
	return "bench" + r.tag + "_" + strconv.Itoa(i%r.cfg.Actions)
}

func (r *runner) actions() []string {
	out := make([]string, r.cfg.Actions)
	for i := range out {
		out[i] = r.action(i)
	}
	return out
}

func (r *runner) user(prefix string, i int) string {
	return prefix + strconv.Itoa(i) + "." + r.tag
}

// progress prints line() to stderr every cfg.Progress until stop is called.
func (r *runner) progress(line func() string) (stop func()) {
	if r.cfg.Progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.Progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(r.stderr, "sbbench:", line())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// dialSpec says where connection i goes and who it is.
type dialSpec func(i int) (url, action, user string)

// connectMany opens n connections with at most cfg.DialConcurrency in
// progress, recording each connect+online+ready time in hist (when not nil).
// Failed connections are nil in the result and counted in r.cerrs; the
// error is non-nil only when ctx ended.
func (r *runner) connectMany(ctx context.Context, n int, spec dialSpec, hist *Histogram) ([]*Conn, error) {
	conns := make([]*Conn, n)
	var done, failed atomic.Int64
	start := time.Now()
	stop := r.progress(func() string {
		d := done.Load()
		return fmt.Sprintf("connected %d/%d (%.0f/s, %d failed)", d, n, float64(d)/time.Since(start).Seconds(), failed.Load())
	})
	defer stop()
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return conns, ctx.Err()
		}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			url, action, user := spec(i)
			t0 := time.Now()
			c, err := r.cl.connect(ctx, url, action, user)
			if err != nil {
				failed.Add(1)
				r.cerrs.add(errKind(err))
				return
			}
			if hist != nil {
				hist.Record(int64(time.Since(t0)))
			}
			conns[i] = c
			done.Add(1)
		}(i)
	}
	wg.Wait()
	return conns, ctx.Err()
}

// closeAll closes every non-nil connection, cfg.DialConcurrency at a time.
func (r *runner) closeAll(conns []*Conn) {
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	var wg sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(c *Conn) {
			defer func() { <-sem; wg.Done() }()
			c.Close(false)
		}(c)
	}
	wg.Wait()
}

func countLive(conns []*Conn) int {
	n := 0
	for _, c := range conns {
		if c != nil {
			n++
		}
	}
	return n
}

// sampler measures the server (with -pid) and this process over a phase.
type sampler struct {
	r       *runner
	t0      time.Time
	server0 procSample
	self0   time.Duration
	busy0   time.Duration
	irq0    time.Duration
	haveM   bool
	ok      bool
}

func (r *runner) startSampler() *sampler {
	s := &sampler{r: r, t0: time.Now(), self0: selfCPU()}
	s.busy0, s.irq0, s.haveM = machineCPU()
	if r.cfg.PID > 0 {
		var err error
		s.server0, err = readProc(r.cfg.PID)
		s.ok = err == nil
		if err != nil {
			r.cerrs.add("proc")
		}
	}
	return s
}

// stop fills res.ClientCPU and res.Server's CPU share for the phase.
func (s *sampler) stop(res *Result) {
	el := time.Since(s.t0)
	if el <= 0 {
		return
	}
	res.ClientCPU = 100 * float64(selfCPU()-s.self0) / float64(el)
	res.LoadAvg = loadAvg()
	var serverPct float64
	if s.ok {
		if p, err := readProc(s.r.cfg.PID); err == nil {
			if res.Server == nil {
				res.Server = &ServerStats{}
			}
			serverPct = 100 * float64(p.CPU-s.server0.CPU) / float64(el)
			res.Server.CPUPct = serverPct
		}
	}
	if busy, irq, ok := machineCPU(); ok && s.haveM {
		res.MachineCPU = 100 * float64(busy-s.busy0) / float64(el)
		res.IRQCPU = 100 * float64(irq-s.irq0) / float64(el)
		if s.ok {
			// What neither the client nor the server used, interrupts
			// aside: other processes — the noise gauge.
			res.OtherCPU = max(0, res.MachineCPU-res.IRQCPU-res.ClientCPU-serverPct)
		}
	}
}

// serverSample reads /proc for the server when -pid is set.
func (r *runner) serverSample() (procSample, bool) {
	if r.cfg.PID <= 0 {
		return procSample{}, false
	}
	p, err := readProc(r.cfg.PID)
	if err != nil {
		r.cerrs.add("proc")
		return p, false
	}
	return p, true
}

// goroutines reads go_goroutines from -metrics (0 when unavailable).
func (r *runner) goroutines(ctx context.Context) float64 {
	if r.cfg.MetricsURL == "" {
		return 0
	}
	m, err := readMetrics(ctx, r.cfg.MetricsURL, "go_goroutines")
	if err != nil {
		r.cerrs.add("metrics")
		return 0
	}
	return m["go_goroutines"]
}

// waitFor polls cond every 100 ms until it returns true or timeout passes;
// it returns cond's last result.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sleepUntil sleeps until t or ctx/stop end; it reports whether t came.
func sleepUntil(ctx context.Context, stop <-chan struct{}, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// waitQuiet samples the machine's CPU use by other processes (everything
// but this process and, with -pid, the server; interrupts aside) over 1 s
// windows until it is under cfg.QuietMax or cfg.QuietWait has passed. It
// returns how long it waited and the last sample.
func (r *runner) waitQuiet(ctx context.Context) (time.Duration, float64) {
	t0 := time.Now()
	var busy float64
	for {
		s := r.startSampler()
		select {
		case <-ctx.Done():
			return time.Since(t0), busy
		case <-time.After(time.Second):
		}
		var probe Result
		s.stop(&probe)
		busy = probe.MachineCPU - probe.IRQCPU - probe.ClientCPU
		if probe.Server != nil {
			busy -= probe.Server.CPUPct
		}
		busy = max(0, busy)
		if busy < r.cfg.QuietMax || time.Since(t0) >= r.cfg.QuietWait {
			return time.Since(t0), busy
		}
		fmt.Fprintf(r.stderr, "sbbench: waiting for a quiet machine: other processes use %.0f%% of a core (want < %.0f%%)\n", busy, r.cfg.QuietMax)
	}
}

var errNoConns = errors.New("no connection could be opened")
