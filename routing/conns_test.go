package routing

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// newConnTestNode runs a Router behind an httptest server and returns it
// with its WebSocket URL.
func newConnTestNode(t testing.TB, cfg Config) (*Router, string) {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "n1"
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	routerRunning()
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := r.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		srv.Close()
		routerStopped(t)
	})
	return r, "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/chat"
}

// dialConn connects user and returns the client and its server-side Conn.
func dialConn(t *testing.T, r *Router, url, user string) (*websocket.Conn, *Conn) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]string{"type": "online", "user_id": user}); err != nil {
		t.Fatal(err)
	}
	m := readNonEvent(t, ws)
	if m["type"] != "ready" {
		t.Fatalf("got %v, want ready", m)
	}
	r.mu.RLock()
	c := r.conns[m["connection_id"].(string)]
	r.mu.RUnlock()
	return ws, c
}

// TestEvictedDropsFrames: a connection that stops reading is evicted once
// its backlog is over OutboundBufferBytes with no frame written for
// OutboundStall, and every frame for it afterwards is dropped at once: its
// memory stays bounded however much more is sent to it.
func TestEvictedDropsFrames(t *testing.T) {
	const buffer = 256 << 10
	r, url := newConnTestNode(t, Config{OutboundBufferBytes: buffer, OutboundStall: 200 * time.Millisecond})
	_, c := dialConn(t, r, url, "slow") // never reads
	frame := []byte(`{"p":"` + strings.Repeat("x", 60<<10) + `"}`)
	deadline := time.Now().Add(60 * time.Second)
	for !c.evicted.Load() {
		if time.Now().After(deadline) {
			t.Fatal("not evicted within 60s")
		}
		c.write(frame)
		c.outMu.Lock()
		over := c.backlogBytes > buffer
		c.outMu.Unlock()
		if over {
			time.Sleep(10 * time.Millisecond) // let the stall clock run
		}
	}
	for range 2000 { // 120 MiB more
		c.write(frame)
	}
	c.outMu.Lock()
	n, bytes := len(c.backlog), c.backlogBytes
	c.outMu.Unlock()
	if n != 0 || bytes != 0 {
		t.Fatalf("after eviction the backlog holds %d frames, %d bytes; want none", n, bytes)
	}
	if in := c.inflight.Load(); in > r.queueLimit+1 {
		t.Fatalf("%d frames in flight, want at most %d", in, r.queueLimit+1)
	}
	if got := counterValue(r.metrics.evictions); got != 1 {
		t.Fatalf("evictions = %v, want 1", got)
	}
}

// TestReaderNotEvictedByBurst: a backlog far over OutboundBufferBytes is no
// eviction while the client reads: its writer keeps making progress.
func TestReaderNotEvictedByBurst(t *testing.T) {
	const buffer = 256 << 10
	r, url := newConnTestNode(t, Config{OutboundBufferBytes: buffer, OutboundStall: 2 * time.Second})
	ws, c := dialConn(t, r, url, "reader")
	const frames = 400
	frame := []byte(`{"p":"` + strings.Repeat("x", 30<<10) + `"}`) // 400 × 30 KiB = 12 MiB
	got := make(chan error, 1)
	go func() {
		for i := range frames {
			_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, _, err := ws.ReadMessage(); err != nil {
				got <- err
				return
			}
			_ = i
		}
		got <- nil
	}()
	maxBacklog := 0
	for range frames {
		c.write(frame)
		c.outMu.Lock()
		maxBacklog = max(maxBacklog, c.backlogBytes)
		c.outMu.Unlock()
	}
	if err := <-got; err != nil {
		t.Fatalf("reader: %v (evicted: %v)", err, c.evicted.Load())
	}
	if c.evicted.Load() {
		t.Fatal("a client that reads was evicted")
	}
	t.Logf("largest backlog %d KiB (buffer %d KiB)", maxBacklog>>10, buffer>>10)
}

// TestOutboundMaxBytes: a backlog over OutboundMaxBytes is evicted even
// while the writer makes progress.
func TestOutboundMaxBytes(t *testing.T) {
	r, url := newConnTestNode(t, Config{OutboundBufferBytes: 64 << 10, OutboundMaxBytes: 1 << 20, OutboundStall: time.Hour})
	_, c := dialConn(t, r, url, "slow")
	frame := []byte(`{"p":"` + strings.Repeat("x", 60<<10) + `"}`)
	deadline := time.Now().Add(60 * time.Second)
	for !c.evicted.Load() {
		if time.Now().After(deadline) {
			t.Fatal("not evicted within 60s")
		}
		c.write(frame)
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.backlogBytes != 0 {
		t.Fatalf("backlog %d bytes after eviction", c.backlogBytes)
	}
}

// TestWriteTimeoutIsSlowConsumer: a client that stops reading with a small
// backlog is closed by the write timeout, and counted as a slow consumer.
func TestWriteTimeoutIsSlowConsumer(t *testing.T) {
	r, url := newConnTestNode(t, Config{WriteWait: 300 * time.Millisecond})
	_, c := dialConn(t, r, url, "slow")
	frame := []byte(`{"p":"` + strings.Repeat("x", 60<<10) + `"}`)
	deadline := time.Now().Add(60 * time.Second)
	for c.state.Load() != stateClosed {
		if time.Now().After(deadline) {
			t.Fatal("not closed within 60s")
		}
		if c.backlogN.Load() == 0 {
			c.write(frame) // fill the socket buffers, keep the backlog small
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	reason := c.reason
	c.mu.Unlock()
	if reason != "slow_consumer" {
		t.Fatalf("closed with reason %q, want slow_consumer", reason)
	}
	if got := counterValue(r.metrics.evictions); got != 1 {
		t.Fatalf("evictions = %v, want 1", got)
	}
}
