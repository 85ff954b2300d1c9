package routing

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/session"
)

// testGate holds a store call, once armed, until it is released.
type testGate struct {
	mu      sync.Mutex
	open    chan struct{} // nil: calls go through
	reached chan struct{} // closed when a held call starts waiting
}

func (g *testGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open, g.reached = make(chan struct{}), make(chan struct{})
}

func (g *testGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
}

// entered is closed once a call waits at the armed gate.
func (g *testGate) entered() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reached
}

// wait holds the caller while the gate is armed, until it is released or
// ctx ends.
func (g *testGate) wait(ctx context.Context) error {
	g.mu.Lock()
	open, reached := g.open, g.reached
	g.mu.Unlock()
	if open == nil {
		return nil
	}
	select {
	case <-reached:
	default:
		close(reached)
	}
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedRestoreStore holds Restore at its restore gate: a node rewriting
// many bindings after Redis lost them. Its beat gate holds the answer of
// a Heartbeat that found the node's heartbeat gone, after Redis wrote it
// again: a node slow to see that answer.
type gatedRestoreStore struct {
	*session.RedisStore
	restore, beat testGate
}

func (s *gatedRestoreStore) Heartbeat(ctx context.Context, node string, ttl time.Duration) (bool, error) {
	alive, err := s.RedisStore.Heartbeat(ctx, node, ttl)
	if err == nil && !alive {
		_ = s.beat.wait(ctx)
	}
	return alive, err
}

func (s *gatedRestoreStore) Restore(ctx context.Context, bs []session.Binding) error {
	if err := s.restore.wait(ctx); err != nil {
		return err
	}
	return s.RedisStore.Restore(ctx, bs)
}

// TestNoFalseOfflineDuringRewrite: Redis is flushed; the sender's node has
// written its heartbeat again and is rewriting its bindings, the
// recipient's node has not rewritten its own yet. A direct message then
// finds no binding of its recipient, who is online: the sender must get
// unavailable, not user_offline (MAILBOX=false), also while the
// recipient's node takes longer than a few heartbeats to rewrite its
// bindings (a node with many), and delivery resumes once they are back.
func TestNoFalseOfflineDuringRewrite(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	start := func(name string) (*apiTestNode, *gatedRestoreStore) {
		c, err := session.NewRedisClient(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		rs := session.NewRedisStore(c, session.RedisOptions{Prefix: "rewrite:"})
		b, err := NewRedisBroker(rs, RedisBrokerConfig{Node: name})
		if err != nil {
			t.Fatal(err)
		}
		g := &gatedRestoreStore{RedisStore: rs}
		return startAPITestNode(t, Config{Node: name, Store: g, Broker: b, HeartbeatTTL: 3 * time.Second}), g
	}
	n0, g0 := start("n0")
	n1, g1 := start("n1")
	alice := n0.online(t, "chat", "alice")
	bob := n1.online(t, "chat", "bob")
	if m := alice.send(t, map[string]any{"to": "bob", "id": "before"}); m["type"] != "ack" || m["delivered"] != 1.0 {
		t.Fatalf("before the flush: %v, want an ack delivered 1", m)
	}
	if m := bob.next(); m["id"] != "before" || m["from"] != "alice" {
		t.Fatalf("bob got %v, want alice's message", m)
	}

	g0.restore.arm()
	g1.restore.arm()
	defer g0.restore.release()
	defer g1.restore.release()
	if err := srv.Client().FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g0.restore.entered(): // n0's heartbeat is back; its bindings are being rewritten
	case <-time.After(10 * time.Second):
		t.Fatal("n0 did not start rewriting its bindings")
	}
	if m := alice.send(t, map[string]any{"to": "bob", "id": "during"}); m["type"] != "error" || m["code"] != "unavailable" {
		t.Errorf("while the nodes rewrite their bindings: %v, want error unavailable (bob is online)", m)
	}
	// Presence would list neither alice nor bob: unavailable, not a
	// wrong list, while this node's own bindings are being rewritten.
	if err := alice.ws.WriteJSON(map[string]any{"type": "presence", "id": "who"}); err != nil {
		t.Fatal(err)
	}
	if m := alice.next(); m["type"] != "error" || m["code"] != "unavailable" {
		t.Errorf("presence while the node rewrites its bindings: %v, want error unavailable", m)
	}
	if code, body := n0.do(t, "GET", "/api/actions/chat", ""); code != http.StatusServiceUnavailable {
		t.Errorf("GET /api/actions/chat while the node rewrites its bindings: %d %v, want 503", code, body)
	}
	// n0 is done; n1, with many bindings perhaps, is still rewriting its
	// own, for longer than two heartbeat periods.
	g0.restore.release()
	apiWaitFor(t, "n0's bindings rewritten", func() bool { return n0.r.restoredAt.Load() != 0 })
	restored := time.Unix(0, n0.r.restoredAt.Load())
	for time.Since(restored) < 2*n0.r.heartbeatEvery()+100*time.Millisecond {
		time.Sleep(50 * time.Millisecond) // the scenario is the time passing
	}
	if m := alice.send(t, map[string]any{"to": "bob", "id": "slow"}); m["type"] != "error" || m["code"] != "unavailable" {
		t.Errorf("while bob's node still rewrites its bindings: %v, want error unavailable (bob is online)", m)
	}
	g1.restore.release()
	apiWaitFor(t, "delivery after the rewrite", func() bool {
		m := alice.send(t, map[string]any{"to": "bob", "id": "after"})
		return m["type"] == "ack" && m["delivered"] == 1.0
	})
}

// signalBroker tells when a direct message's publish has returned.
type signalBroker struct {
	*RedisBroker
	published chan DirectDelivery
}

func (b *signalBroker) PublishDirect(ctx context.Context, m *DirectMessage) (DirectDelivery, error) {
	d, err := b.RedisBroker.PublishDirect(ctx, m)
	select {
	case b.published <- d:
	default:
	}
	return d, err
}

// TestNoFalseOfflineAtHeartbeat: Redis is flushed and the sender's node
// writes its heartbeat again: from then, Redis runs its route scripts as
// if nothing was lost. A direct message routed before the node has read
// that heartbeat's answer (which says its bindings are gone) finds no
// binding of its recipient, who is online: the sender must get
// unavailable, not user_offline. The node has to wait for the heartbeat
// in flight to know.
func TestNoFalseOfflineAtHeartbeat(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var published chan DirectDelivery
	start := func(name string) (*apiTestNode, *gatedRestoreStore) {
		c, err := session.NewRedisClient(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		rs := session.NewRedisStore(c, session.RedisOptions{Prefix: "beat:"})
		b, err := NewRedisBroker(rs, RedisBrokerConfig{Node: name})
		if err != nil {
			t.Fatal(err)
		}
		sb := &signalBroker{RedisBroker: b, published: make(chan DirectDelivery, 1)}
		if published == nil {
			published = sb.published
		}
		g := &gatedRestoreStore{RedisStore: rs}
		return startAPITestNode(t, Config{Node: name, Store: g, Broker: sb, HeartbeatTTL: 3 * time.Second}), g
	}
	n0, g0 := start("n0")
	n1, g1 := start("n1")
	alice := n0.online(t, "chat", "alice")
	n1.online(t, "chat", "bob")
	if m := alice.send(t, map[string]any{"to": "bob", "id": "before"}); m["type"] != "ack" || m["delivered"] != 1.0 {
		t.Fatalf("before the flush: %v, want an ack delivered 1", m)
	}
	<-published

	g0.beat.arm()
	g1.restore.arm() // bob's binding stays gone
	defer g0.beat.release()
	defer g1.restore.release()
	if err := srv.Client().FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g0.beat.entered(): // n0's heartbeat is written again; n0 has not seen the answer
	case <-time.After(10 * time.Second):
		t.Fatal("n0 did not beat after the flush")
	}
	if err := alice.ws.WriteJSON(map[string]any{"type": "message", "to": "bob", "id": "during"}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-published:
		if d.Reached != 0 {
			t.Fatalf("the publish during the flush reached %d, want 0 (bob's binding is gone)", d.Reached)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not published")
	}
	g0.beat.release()
	if m := alice.nextAnswer(t); m["type"] != "error" || m["code"] != "unavailable" {
		t.Errorf("routed before the node read its heartbeat's answer: %v, want error unavailable (bob is online)", m)
	}
	g1.restore.release()
}

// send writes m and returns the answer: the next message that is an ack
// or an error.
func (c *apiWS) send(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	if err := c.ws.WriteJSON(m); err != nil {
		t.Fatal(err)
	}
	return c.nextAnswer(t)
}

// nextAnswer returns the next message that is an ack or an error.
func (c *apiWS) nextAnswer(t *testing.T) map[string]any {
	t.Helper()
	for {
		a := c.next()
		if a["type"] == "ack" || a["type"] == "error" {
			return a
		}
	}
}
