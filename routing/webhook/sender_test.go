package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/routing/webhook"
	"github.com/switchboard/switchboard/session"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	key, err := webhook.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// startSender runs a Sender posting to rcv until the test ends.
func startSender(t testing.TB, rcv *receiver, cfg webhook.Config) (*webhook.Sender, *prometheus.Registry) {
	t.Helper()
	s, reg, _ := runSender(t, rcv, cfg)
	return s, reg
}

// runSender runs a Sender posting to rcv until stop is called or the test
// ends.
func runSender(t testing.TB, rcv *receiver, cfg webhook.Config) (s *webhook.Sender, reg *prometheus.Registry, stop func()) {
	t.Helper()
	reg = prometheus.NewRegistry()
	cfg.URL, cfg.Key, cfg.Registerer = rcv.URL(), testKey(t), reg
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("Sender.Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return s, reg, stop
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func TestEventBodies(t *testing.T) {
	rcv := newReceiver(t)
	s, _ := startSender(t, rcv, webhook.Config{OfflineDelay: 200 * time.Millisecond})
	s.UserOnline(session.Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1", ConnectedAt: time.Now()})
	s.Undelivered([]byte(`{"from":"alice","action":"chat","ts":1795582861302,"text":"psst, bob","to":"bob","seq":7,"type":"message"}`), "bob", "chat")
	s.UserOffline("alice", "chat")
	waitFor(t, 10*time.Second, "three events", func() bool { return len(rcv.requests()) >= 3 })

	byType := map[string]got{}
	ids := map[string]bool{}
	for _, g := range rcv.requests() {
		byType[g.Type] = g
		ids[g.ID] = true
		if !strings.HasPrefix(g.ID, "msg_") {
			t.Errorf("webhook-id %q, want msg_…", g.ID)
		}
	}
	if len(ids) != 3 {
		t.Errorf("got %d distinct webhook-ids, want 3", len(ids))
	}
	for typ, data := range map[string]string{
		"user.online":         `{"user_id":"alice","action":"chat","connection_id":"c1","node":"n1"}`,
		"user.offline":        `{"user_id":"alice","action":"chat"}`,
		"message.undelivered": `{"from":"alice","action":"chat","ts":1795582861302,"text":"psst, bob","to":"bob","seq":7,"type":"message"}`,
	} {
		g, ok := byType[typ]
		if !ok {
			t.Errorf("no %s event", typ)
			continue
		}
		var b struct{ Timestamp string }
		if err := json.Unmarshal(g.Body, &b); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, b.Timestamp)
		if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
			t.Errorf("%s: timestamp %q: want RFC 3339, just now (%v)", typ, b.Timestamp, err)
		}
		want := `{"type":"` + typ + `","timestamp":"` + b.Timestamp + `","data":` + data + `}`
		if string(g.Body) != want {
			t.Errorf("%s body\n got %s\nwant %s", typ, g.Body, want)
		}
	}
	// The offline event came after the delay.
	if on, off := byType["user.online"], byType["user.offline"]; off.At.Sub(on.At) < 150*time.Millisecond {
		t.Errorf("user.offline %v after user.online, want at least the 200ms delay", off.At.Sub(on.At))
	}
}

func TestRetriesWithBackoffSameID(t *testing.T) {
	rcv := newReceiver(t)
	rcv.setAnswer(func(_ got, n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	s, reg := startSender(t, rcv, webhook.Config{RetryMin: 200 * time.Millisecond})
	s.UserOnline(session.Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1"})
	waitFor(t, 20*time.Second, "four attempts", func() bool { return len(rcv.requests()) >= 4 })
	waitFor(t, 5*time.Second, "delivered counted", func() bool {
		return counter(t, reg, "switchboard_webhook_delivered_total") == 1
	})
	reqs := rcv.requests()
	if len(reqs) != 4 {
		t.Fatalf("got %d attempts, want 4", len(reqs))
	}
	var gaps []time.Duration
	for i, g := range reqs {
		if g.ID != reqs[0].ID || string(g.Body) != string(reqs[0].Body) {
			t.Errorf("attempt %d: id %s body %s, want the first attempt's", i+1, g.ID, g.Body)
		}
		if i > 0 {
			gaps = append(gaps, g.At.Sub(reqs[i-1].At))
		}
	}
	if gaps[0] < 180*time.Millisecond {
		t.Errorf("first retry after %v, want about RetryMin (200ms)", gaps[0])
	}
	for i := 1; i < len(gaps); i++ {
		if gaps[i] <= gaps[i-1] {
			t.Errorf("gaps %v: want each longer than the one before", gaps)
		}
	}
	if got := counter(t, reg, "switchboard_webhook_retries_total"); got != 3 {
		t.Errorf("retries_total = %v, want 3", got)
	}
}

func TestHungReceiverDropsAfterRetryForOthersFlow(t *testing.T) {
	rcv := newReceiver(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	rcv.setAnswer(func(g got, _ int) int {
		if g.Data["user_id"] == "stuck" {
			select { // never answers in time
			case <-release:
			case <-time.After(2 * time.Second):
			}
		}
		return http.StatusOK
	})
	s, reg := startSender(t, rcv, webhook.Config{
		Timeout: 100 * time.Millisecond, RetryFor: time.Second, RetryMin: 100 * time.Millisecond,
	})
	s.UserOnline(session.Binding{ConnID: "c0", UserID: "stuck", Action: "chat", Node: "n1"})
	for i := range 20 {
		s.UserOnline(session.Binding{ConnID: fmt.Sprint("c", i+1), UserID: fmt.Sprint("user", i), Action: "chat", Node: "n1"})
	}
	waitFor(t, 10*time.Second, "the other users' events", func() bool {
		return counter(t, reg, "switchboard_webhook_delivered_total") == 20
	})
	if dropped := counter(t, reg, "switchboard_webhook_dropped_total", "reason", "retry_expired"); dropped != 0 {
		t.Fatalf("dropped %v before RetryFor passed", dropped)
	}
	waitFor(t, 10*time.Second, "the stuck event dropped", func() bool {
		return counter(t, reg, "switchboard_webhook_dropped_total", "reason", "retry_expired") == 1
	})
	// Later events, of other users and of the same one, still flow.
	rcv.setAnswer(nil)
	s.UserOnline(session.Binding{ConnID: "c99", UserID: "late", Action: "chat", Node: "n1"})
	s.Undelivered([]byte(`{"to":"stuck"}`), "stuck", "chat")
	waitFor(t, 10*time.Second, "later events", func() bool {
		return counter(t, reg, "switchboard_webhook_delivered_total") == 22
	})
}

// Under concurrency, a flaky receiver and retries, every user's events
// are acknowledged in the order they were emitted: an event is only sent
// once the previous one of its user and action was acknowledged.
func TestOrderPerUserUnderConcurrency(t *testing.T) {
	rcv := newReceiver(t)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	rcv.setAnswer(func(got, int) int {
		mu.Lock()
		fail, d := rng.IntN(4) == 0, time.Duration(rng.IntN(5))*time.Millisecond
		mu.Unlock()
		time.Sleep(d) // a receiver's work, in the receiver
		if fail {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s, reg := startSender(t, rcv, webhook.Config{RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		OfflineDelay: 50 * time.Millisecond, Concurrency: 8})
	const users, msgs = 40, 10
	var wg sync.WaitGroup
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprint("u", u)
			s.UserOnline(session.Binding{ConnID: user, UserID: user, Action: "chat", Node: "n1"})
			for i := range msgs {
				s.Undelivered(fmt.Appendf(nil, `{"to":%q,"n":%d}`, user, i), user, "chat")
			}
			s.UserOffline(user, "chat")
		}()
	}
	wg.Wait()
	want := float64(users * (msgs + 2))
	waitFor(t, 60*time.Second, "every event acknowledged", func() bool {
		return counter(t, reg, "switchboard_webhook_delivered_total") == want
	})
	// Per user: the step of each request (online 0, message n → n+1,
	// offline msgs+1); an acknowledged step is never followed by an earlier one.
	last := map[string]int{}
	for _, g := range rcv.requests() {
		var user string
		step := 0
		switch g.Type {
		case "user.online":
			user = g.Data["user_id"].(string)
		case "user.offline":
			user, step = g.Data["user_id"].(string), msgs+1
		case "message.undelivered":
			user, step = g.Data["to"].(string), int(g.Data["n"].(float64))+1
		}
		if prev, ok := last[user]; ok && step < prev {
			t.Fatalf("user %s: %s after a later event", user, g.Type)
		}
		last[user] = step
	}
	for u := range users {
		if last[fmt.Sprint("u", u)] != msgs+1 {
			t.Fatalf("user u%d: no user.offline", u)
		}
	}
}

func TestReloadWithinDelayEmitsNothing(t *testing.T) {
	rcv := newReceiver(t)
	s, reg := startSender(t, rcv, webhook.Config{OfflineDelay: 300 * time.Millisecond})
	b := session.Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1"}
	s.UserOnline(b)
	waitFor(t, 10*time.Second, "user.online", func() bool { return len(rcv.requests()) == 1 })
	s.UserOffline("alice", "chat") // a page reload
	b.ConnID = "c2"
	s.UserOnline(b)
	waitFor(t, 10*time.Second, "the pair debounced", func() bool {
		return counter(t, reg, "switchboard_webhook_debounced_total") == 1
	})
	// Nothing may come, even once the delay has passed.
	time.Sleep(600 * time.Millisecond) // asserting an absence: wait past the 300ms delay
	if reqs := rcv.requests(); len(reqs) != 1 {
		t.Fatalf("got %d events, want only the first user.online", len(reqs))
	}
	// A leave that lasts emits user.offline.
	s.UserOffline("alice", "chat")
	waitFor(t, 10*time.Second, "user.offline", func() bool { return len(rcv.requests()) == 2 })
	if typ := rcv.requests()[1].Type; typ != "user.offline" {
		t.Fatalf("second event %s, want user.offline", typ)
	}
}

// A burst of connects does not open a request per connect: requests in
// flight stay within Concurrency.
func TestBurstBoundsRequestsInFlight(t *testing.T) {
	rcv := newReceiver(t)
	rcv.setAnswer(func(got, int) int {
		time.Sleep(5 * time.Millisecond) // the receiver's work
		return http.StatusOK
	})
	const conns, limit = 5000, 16
	s, reg := startSender(t, rcv, webhook.Config{Concurrency: limit})
	for i := range conns {
		u := fmt.Sprint("u", i)
		s.UserOnline(session.Binding{ConnID: u, UserID: u, Action: "chat", Node: "n1"})
	}
	waitFor(t, 60*time.Second, "every user.online", func() bool {
		return counter(t, reg, "switchboard_webhook_delivered_total") == conns
	})
	rcv.mu.Lock()
	maxIn := rcv.maxIn
	rcv.mu.Unlock()
	if maxIn > limit || maxIn < 2 {
		t.Fatalf("at most %d requests in flight, want between 2 and %d", maxIn, limit)
	}
	t.Logf("%d events, at most %d requests in flight", conns, maxIn)
}

// The receiver's state is logged once per change, never per event, and
// without the URL's credentials or query.
func TestReceiverStateLogged(t *testing.T) {
	rcv := newReceiver(t)
	var mu sync.Mutex
	failing := true
	rcv.setAnswer(func(got, int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	var logs syncBuffer
	cfg := webhook.Config{RetryMin: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	reg := prometheus.NewRegistry()
	cfg.URL, cfg.Key, cfg.Registerer, cfg.PollInterval = strings.Replace(rcv.URL(), "http://", "http://user:pw@", 1)+"/?token=secret", testKey(t), reg, 20*time.Millisecond
	s, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 10 {
		s.Undelivered([]byte(`{}`), fmt.Sprint("u", i), "chat")
	}
	waitFor(t, 10*time.Second, "retries", func() bool { return counter(t, reg, "switchboard_webhook_retries_total") >= 30 })
	mu.Lock()
	failing = false
	mu.Unlock()
	waitFor(t, 10*time.Second, "delivery", func() bool { return counter(t, reg, "switchboard_webhook_delivered_total") == 10 })
	out := logs.String()
	if n := strings.Count(out, "webhook receiver failing"); n != 1 {
		t.Errorf("%d 'failing' lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "webhook receiver recovered"); n != 1 {
		t.Errorf("%d 'recovered' lines, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "pw") {
		t.Errorf("logs show the URL's credentials or query:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
