package routing

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/session"
)

// gatedMailbox holds the first catch-up read (limit > 0) until released:
// before reading (before) or after (!before).
type gatedMailbox struct {
	*session.MemoryMailbox
	before  bool
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedMailbox) Read(ctx context.Context, user, action string, since int64, limit int) (session.Page, error) {
	if limit == 0 {
		return g.MemoryMailbox.Read(ctx, user, action, since, limit)
	}
	gated := false
	g.once.Do(func() { gated = true })
	if gated && g.before {
		close(g.entered)
		<-g.release
	}
	p, err := g.MemoryMailbox.Read(ctx, user, action, since, limit)
	if gated && !g.before {
		close(g.entered)
		<-g.release
	}
	return p, err
}

// TestCatchUpSeam holds the catch-up's first read while live messages
// arrive, so that they reach the connection during the catch-up: each
// message must arrive once, in seq order, whether the held read sees the
// live messages (before) or not (after), and when more arrive than the
// connection may hold (overflow).
func TestCatchUpSeam(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool
		live   int
		buffer int
	}{
		{"read sees the live messages", true, 5, 0},
		{"read misses the live messages", false, 5, 0},
		{"live messages overflow", false, 200, 2048},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &gatedMailbox{MemoryMailbox: session.NewMemoryMailbox(session.MailboxOptions{}, 0),
				before: tc.before, entered: make(chan struct{}), release: make(chan struct{})}
			r, url := newMailboxRouter(t, Config{Mailbox: g, OutboundBufferBytes: tc.buffer})
			ctx := t.Context()
			publish := func(i int) {
				t.Helper()
				if _, _, err := r.PublishSeq(ctx, "chat", "bob", fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, strings.Repeat("x", 50))); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i <= 3; i++ {
				publish(i)
			}
			ws := dialOnline(t, url, `{"type":"online","action":"chat","user_id":"bob","since":0}`)
			<-g.entered
			for i := 4; i <= 3+tc.live; i++ {
				publish(i)
			}
			close(g.release)
			total := 3 + tc.live
			for want := 1; want <= total; want++ {
				m := readJSON(t, ws)
				if m["type"] != "message" || m["seq"] != float64(want) || m["n"] != float64(want) {
					t.Fatalf("got %v, want message %d", m, want)
				}
			}
			publish(total + 1) // after the catch-up: straight through
			if m := readJSON(t, ws); m["seq"] != float64(total+1) {
				t.Fatalf("got %v, want seq %d", m, total+1)
			}
			if r.catchingUp.Load() != 0 {
				t.Errorf("catchingUp = %d after the catch-up", r.catchingUp.Load())
			}
		})
	}
}

// TestCatchUpEndsWithConnection: a connection that closes in the middle
// of its catch-up ends it (no goroutine is left waiting).
func TestCatchUpEndsWithConnection(t *testing.T) {
	t.Parallel()
	g := &gatedMailbox{MemoryMailbox: session.NewMemoryMailbox(session.MailboxOptions{}, 0),
		entered: make(chan struct{}), release: make(chan struct{})}
	r, url := newMailboxRouter(t, Config{Mailbox: g, OutboundBufferBytes: 4096})
	for i := range 500 {
		if _, _, err := r.PublishSeq(t.Context(), "chat", "bob", fmt.Appendf(nil, `{"n":%d,"pad":%q}`, i, strings.Repeat("x", 100))); err != nil {
			t.Fatal(err)
		}
	}
	ws := dialOnline(t, url, `{"type":"online","action":"chat","user_id":"bob","since":0}`)
	<-g.entered
	close(g.release)
	readJSON(t, ws) // the catch-up has begun; it waits for the reader now
	ws.Close()
	apiWaitFor(t, "the catch-up to end", func() bool { return r.catchingUp.Load() == 0 })
}

// newMailboxRouter runs a Router with cfg (Node and Store set here) on an
// httptest server and returns it with its ws:// URL.
func newMailboxRouter(t *testing.T, cfg Config) (*Router, string) {
	t.Helper()
	cfg.Node = "n1"
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.Handler(r))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := r.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		<-done
		srv.Close()
	})
	return r, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

// dialOnline connects, sends online and reads ready.
func dialOnline(t *testing.T, url, online string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteMessage(websocket.TextMessage, []byte(online)); err != nil {
		t.Fatal(err)
	}
	if m := readJSON(t, ws); m["type"] != "ready" {
		t.Fatalf("got %v, want ready", m)
	}
	return ws
}

func readJSON(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := ws.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func TestMailSeq(t *testing.T) {
	for frame, want := range map[string]int64{
		`{"a":1,"seq":42}`:  42,
		`{"seq":1}`:         1,
		`{"a":"seq":42}`:    42,
		`{"a":1}`:           0,
		`{"a":1,"seq":}`:    0,
		`{"a":1,"seq":"4"}`: 0,
		``:                  0,
	} {
		if got := mailSeq([]byte(frame)); got != want {
			t.Errorf("mailSeq(%s) = %d, want %d", frame, got, want)
		}
	}
}

func TestDropSeq(t *testing.T) {
	for in, want := range map[string]string{
		`{"from":"a","text":"q"}`:             `{"from":"a","text":"q"}`,
		`{"from":"a","seq":3,"text":"x"}`:     `{ "from":"a","text":"x"}`,
		`{"seq":3}`:                           `{}`,
		`{"from":"a","SEQ":3,"s\u0065q":4}`:   `{ "from":"a"}`,
		`{"from":"a","sequence":3,"Q":"seq"}`: `{"from":"a","sequence":3,"Q":"seq"}`,
	} {
		if got := string(dropSeq([]byte(in))); got != want {
			t.Errorf("dropSeq(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestCanonicalID(t *testing.T) {
	for raw, want := range map[string]string{
		`"abc"`:      `"abc"`,
		`"\u0061bc"`: `"abc"`,
		`7`:          `7`,
		`-7`:         `-7`,
		`"7"`:        `"7"`,
	} {
		if got := canonicalID([]byte(raw)); got != want {
			t.Errorf("canonicalID(%s) = %s, want %s", raw, got, want)
		}
	}
	if canonicalID(nil) != "" {
		t.Error("canonicalID(nil) != \"\"")
	}
}
