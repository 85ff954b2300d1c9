package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

// startCluster runs n nodes sharing one real Redis.
func startCluster(t *testing.T, n int, args ...string) (*redistest.Server, []*testNode) {
	t.Helper()
	rs := redistest.Start(t)
	return rs, startNodes(t, rs.URL(), n, args...)
}

func startNodes(t *testing.T, url string, n int, args ...string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, append([]string{"--redis-url", url, "--heartbeat-ttl", "2s",
			"--node-id", fmt.Sprintf("node%d", i)}, args...)...)
	}
	return nodes
}

func connID(t *testing.T, c *client) string {
	t.Helper()
	return c.ready["connection_id"].(string)
}

func TestClusterBindingsInRedis(t *testing.T) {
	rs, ns := startCluster(t, 1)
	rdb := rs.Client()
	ctx := context.Background()
	before := time.Now().UnixMilli()
	a := ns[0].online(t, "chat", "auth0|5f7c")
	id := connID(t, a)

	got, err := rdb.HGetAll(ctx, "sb:conn:"+id).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got["user_id"] != "auth0|5f7c" || got["action"] != "chat" || got["node"] != "node0" {
		t.Fatalf("sb:conn:%s = %v, want exactly user_id, action, node, connected_at", id, got)
	}
	var at int64
	if _, err := fmt.Sscan(got["connected_at"], &at); err != nil || at < before || at > time.Now().UnixMilli() {
		t.Fatalf("connected_at = %q, want Unix ms between %d and now", got["connected_at"], before)
	}
	if v := rdb.HGetAll(ctx, "sb:action:chat").Val(); len(v) != 1 || v[id] != "auth0|5f7c" {
		t.Fatalf("sb:action:chat = %v", v)
	}
	if v := rdb.HGetAll(ctx, "sb:user:auth0|5f7c").Val(); len(v) != 1 || v[id] != "chat" {
		t.Fatalf("sb:user:auth0|5f7c = %v", v)
	}
	if ttl := rdb.PTTL(ctx, "sb:node:node0").Val(); ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("sb:node:node0 TTL = %v, want within the 2s heartbeat TTL", ttl)
	}

	a.ws.Close()
	waitFor(t, 5*time.Second, "bindings removed", func() bool {
		n, _ := rdb.Exists(ctx, "sb:conn:"+id, "sb:action:chat", "sb:user:auth0|5f7c").Result()
		return n == 0
	})
}

// routingScenario checks direct messages, broadcasts, acks, presence and
// join/leave across three nodes.
func routingScenario(t *testing.T, ns []*testNode) {
	a1 := ns[0].online(t, "chat", "alice")
	b := ns[1].online(t, "chat", "bob")
	a1.expectEvent("join", "bob")
	a2 := ns[2].online(t, "chat", "alice") // second device: no join
	c := ns[2].online(t, "chat", "carol")
	// Bob may also see alice's join: it was published while he was coming
	// online on another node (docs/protocol.md: a join is a set-add).
	for _, cl := range []*client{a1, a2, b} {
		cl.expectEventWithin("join", "carol", 5*time.Second)
	}
	other := ns[1].online(t, "other", "dave")

	// Direct to a user with devices on two other nodes.
	b.send(map[string]any{"text": "hi alice", "to": "alice", "id": "d1"})
	for _, cl := range []*client{a1, a2} {
		if m := cl.expect("message"); m["text"] != "hi alice" || m["from"] != "bob" || m["to"] != "alice" {
			t.Fatalf("%s got %v", cl.name, m)
		}
	}
	if ack := b.expect("ack"); ack["delivered"] != 2.0 || ack["id"] != "d1" {
		t.Fatalf("ack = %v, want delivered 2", ack)
	}
	c.expectNothing(100 * time.Millisecond)

	// Broadcast: everyone in the action but the sender, on every node.
	a1.send(map[string]any{"text": "hello room", "id": 7})
	for _, cl := range []*client{a2, b, c} {
		if m := cl.expect("message"); m["text"] != "hello room" || m["from"] != "alice" {
			t.Fatalf("%s got %v", cl.name, m)
		}
	}
	if ack := a1.expect("ack"); ack["delivered"] != 3.0 {
		t.Fatalf("ack = %v, want delivered 3", ack)
	}
	other.expectNothing(100 * time.Millisecond)

	// Presence is cluster-wide, sorted, distinct.
	other.send(map[string]any{"type": "presence"})
	if p := other.expect("presence"); fmt.Sprint(p["users"]) != "[dave]" {
		t.Fatalf("presence in other = %v", p)
	}
	b.send(map[string]any{"type": "presence"})
	if p := b.expect("presence"); fmt.Sprint(p["users"]) != "[alice bob carol]" {
		t.Fatalf("presence = %v", p)
	}

	// A user with no connection in the action (dave is in another) is no
	// error: the message is kept in dave's mailbox.
	c.send(map[string]any{"text": "x", "to": "dave", "id": 1})
	if a := c.expect("ack"); a["delivered"] != 0.0 || a["seq"] != 1.0 {
		t.Fatalf("ack = %v, want delivered 0 seq 1", a)
	}

	// Leave only when the last device goes.
	a1.ws.Close()
	b.expectNothing(200 * time.Millisecond)
	a2.ws.Close()
	b.expectEvent("leave", "alice")
	c.expectEvent("leave", "alice")
}

func TestClusterRouting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		routingScenario(t, startNodes(t, be.url, 3))
	})
}

func TestClusterNodeCrash(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIGKILL test runs on Linux")
	}
	forEachBackend(t, testNodeCrash)
}

func testNodeCrash(t *testing.T, be *backend) {
	const ttl = 2 * time.Second
	ns := startNodes(t, be.url, 1)
	dying := startBinary(t, buildBinary(t), "--redis-url", be.url, "--heartbeat-ttl", ttl.String(), "--node-id", "doomed")
	watcher := ns[0].online(t, "chat", "watcher")
	victim := dying.online(t, "chat", "victim")
	watcher.expectEvent("join", "victim")
	id := connID(t, victim)

	killed := time.Now()
	if err := dying.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup
		t.Fatal(err)
	}
	watcher.expectEventWithin("leave", "victim", 2*ttl+time.Second)
	if d := time.Since(killed); d > 2*ttl+time.Second {
		t.Fatalf("leave after %v, want within 2×TTL", d)
	}
	rdb := be.rdb
	for _, k := range []string{be.key("conn", id), be.key("user", "victim")} {
		if n := rdb.Exists(context.Background(), k).Val(); n != 0 {
			t.Fatalf("dead node's binding %s still in Redis", k)
		}
	}
	if v := rdb.HGetAll(context.Background(), be.key("action", "chat")).Val(); len(v) != 1 {
		t.Fatalf("sb:action:chat = %v, want only the watcher", v)
	}
	watcher.send(map[string]any{"type": "presence"})
	if p := watcher.expect("presence"); fmt.Sprint(p["users"]) != "[watcher]" {
		t.Fatalf("presence = %v", p)
	}
}

func TestClusterRedisRestart(t *testing.T) {
	forEachBackend(t, testRedisRestart)
}

func testRedisRestart(t *testing.T, be *backend) {
	ns := startNodes(t, be.url, 2)
	a := ns[0].online(t, "chat", "alice")
	a2 := ns[0].online(t, "chat", "alice2")
	b := ns[1].online(t, "chat", "bob")
	// A join is sent after the joiner's ready and a store round trip, so
	// alice2's may follow bob's, and alice's may reach alice2 (joins are
	// set operations: docs/protocol.md).
	a.expectEvents("join", "alice2", "bob")
	a2.expectEventWithin("join", "bob", 5*time.Second)
	a2.drain()

	be.stop()
	// Same-node delivery goes on.
	a.send(map[string]any{"text": "local", "to": "alice2"})
	if m := a2.expect("message"); m["text"] != "local" {
		t.Fatalf("got %v", m)
	}
	// What cannot reach other nodes gets unavailable; readiness drops.
	waitFor(t, 10*time.Second, "unavailable for cross-node message", func() bool {
		a.send(map[string]any{"text": "remote", "to": "bob", "id": "r"})
		m := a.next()
		return m["type"] == "error" && m["code"] == "unavailable"
	})
	waitFor(t, 10*time.Second, "/readyz 503", func() bool { return status(ns[0].url+"/readyz") == 503 })

	be.restart() // empty: no persistence
	waitFor(t, 30*time.Second, "bindings rewritten", func() bool {
		return be.rdb.HLen(context.Background(), be.key("action", "chat")).Val() == 3
	})
	waitFor(t, 15*time.Second, "/readyz 200", func() bool { return status(ns[0].url+"/readyz") == 200 })
	// Cross-node delivery resumes by itself.
	b.drain()
	waitFor(t, 15*time.Second, "cross-node delivery", func() bool {
		a.send(map[string]any{"text": "back", "to": "bob"})
		m, err := b.read(300 * time.Millisecond)
		return err == nil && m["text"] == "back"
	})
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestClusterRandomized sends thousands of messages between users spread
// over three nodes (on each backend) and checks that every connection got exactly what was
// addressed to it, in order per sender.
func TestClusterRandomized(t *testing.T) {
	forEachBackend(t, testRandomized)
}

func testRandomized(t *testing.T, be *backend) {
	ns := startNodes(t, be.url, 3, "--rate-limit", "100000", "--rate-burst", "100000", "--presence-events=false")
	rng := rand.New(rand.NewPCG(1, 2))
	const users, messages = 24, 3000
	actions := []string{"a", "b"}
	type dev struct {
		c      *client
		user   string
		action string
		mu     sync.Mutex
		got    []string
	}
	var devs []*dev
	for u := range users {
		user := fmt.Sprintf("u%02d", u)
		action := actions[u%2]
		for range 1 + u%2 { // some users have two devices
			n := ns[rng.IntN(len(ns))]
			devs = append(devs, &dev{c: n.online(t, action, user), user: user, action: action})
		}
	}
	// Expected deliveries per device, in send order per sender.
	want := make(map[*dev][]string)
	direct := map[string]bool{} // the keys of direct messages
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := d.c.read(3 * time.Second)
				if err != nil {
					return
				}
				if m["type"] == "message" {
					d.mu.Lock()
					d.got = append(d.got, m["k"].(string))
					d.mu.Unlock()
				}
			}
		}()
	}
	for i := range messages {
		s := devs[rng.IntN(len(devs))]
		k := fmt.Sprintf("%s %d", connID(t, s.c), i)
		msg := map[string]any{"k": k}
		var to string
		if rng.IntN(3) > 0 { // two thirds direct
			var peers []*dev
			for _, d := range devs {
				if d.action == s.action {
					peers = append(peers, d)
				}
			}
			to = peers[rng.IntN(len(peers))].user
			msg["to"] = to
			direct[k] = true
		}
		for _, d := range devs {
			if d != s && d.action == s.action && (to == "" || d.user == to) {
				want[d] = append(want[d], k)
			}
		}
		if err := s.c.ws.WriteJSON(msg); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			// Pace the sender: a client that floods without reading acks
			// would (rightly) make slow consumers of the receivers.
			waitFor(t, 10*time.Second, "deliveries so far", func() bool {
				for _, d := range devs {
					d.mu.Lock()
					n := len(d.got)
					d.mu.Unlock()
					if n < len(want[d]) {
						return false
					}
				}
				return true
			})
		}
	}
	wg.Wait()
	for _, d := range devs {
		d.mu.Lock()
		got := d.got
		d.mu.Unlock()
		if !sameSet(got, want[d]) {
			t.Errorf("%s/%s: got %d messages, want %d (missing or extra)", d.user, d.action, len(got), len(want[d]))
			continue
		}
		// Per-sender order: keys grow with send order, so the keys from one
		// sender must arrive increasing.
		//
		// On a Redis Cluster a sender's direct messages (the recipient's
		// slot) and broadcasts (the action's slot) travel through different
		// masters, so order holds per sender and kind there
		// (docs/cluster.md); on one Redis it holds per sender.
		last := map[string]int{}
		for _, g := range got {
			var sender string
			var k int
			fmt.Sscanf(g, "%s %d", &sender, &k)
			stream := sender
			if be.cluster != nil && direct[g] {
				stream += " direct"
			}
			if prev, ok := last[stream]; ok && k < prev {
				t.Errorf("%s/%s: message %d from %s arrived after %d", d.user, d.action, k, stream, prev)
			}
			last[stream] = k
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
